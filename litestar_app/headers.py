"""Request headers that several routes read, declared once for the OpenAPI document."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

from core.jobs.idempotency import HEADER, MAX_KEY_CHARS

IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header=HEADER,
        description=f"1 to {MAX_KEY_CHARS} printable ASCII characters; a retry with the same key (within idempotency_window_s) gets the first submission's job instead "
        "of a second one; the same key with another request is a 422",
    ),
]
