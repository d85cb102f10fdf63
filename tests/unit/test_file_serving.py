from __future__ import annotations

import pytest

from litestar_app.file_serving import parse_range

HUGE = "9" * 5000  # more digits than Python converts by default (4300): once a 500


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=0-5000", (0, 999)),
        ("bytes=1000-", "unsatisfiable"),
        (f"bytes={HUGE}-", "unsatisfiable"),
        (f"bytes=0-{HUGE}", (0, 999)),
        (f"bytes=-{HUGE}", (0, 999)),
        ("bytes=0-1,5-9", None),
        ("items=0-1", None),
        (None, None),
    ],
)
def test_ranges_of_any_length_are_read_or_refused_as_http_says(header: str | None, wanted: object) -> None:
    assert parse_range(header, 1000) == wanted
