"""Idempotent submits on the real store: remembered across a restart, forgotten after the window."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.generation.requests import Txt2ImgRequest
from core.job_types import JOB_CODEC
from core.jobs.idempotency import IdempotentSubmits, Unprocessable
from core.jobs.schemas import JobAccepted
from core.store.sqlite import STORE_FILE, SqliteStore


class Counter:
    def __init__(self) -> None:
        self.made = 0

    async def submit(self) -> JobAccepted:
        self.made += 1
        return JobAccepted(f"job-{self.made}", "pending", self.made)


async def test_an_answer_survives_a_restart(tmp_path: Path) -> None:
    counter, request = Counter(), Txt2ImgRequest(prompt="cat")
    store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    first = await IdempotentSubmits(store, 3600).submit("k", "/txt2img", request, counter.submit, JobAccepted)
    store.close()
    reopened = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    submits = IdempotentSubmits(reopened, 3600)
    assert await submits.submit("k", "/txt2img", request, counter.submit, JobAccepted) == first
    assert counter.made == 1
    with pytest.raises(Unprocessable, match="Idempotency-Key: this key was used with another request"):
        await submits.submit("k", "/txt2img", Txt2ImgRequest(prompt="dog"), counter.submit, JobAccepted)
    other_route = await submits.submit("k", "/img2img", request, counter.submit, JobAccepted)
    assert other_route.job_id == "job-2"  # keys are scoped by route
    reopened.close()


async def test_an_answer_is_forgotten_after_the_window(tmp_path: Path) -> None:
    counter, request = Counter(), Txt2ImgRequest(prompt="cat")
    store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    submits = IdempotentSubmits(store, 0)
    await submits.submit("k", "/txt2img", request, counter.submit, JobAccepted)
    again = await submits.submit("k", "/txt2img", Txt2ImgRequest(prompt="dog"), counter.submit, JobAccepted)
    assert again.job_id == "job-2" and counter.made == 2
    store.close()
