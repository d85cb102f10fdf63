"""Which pending job goes next (core/workers/pool.py FairOrder): higher priority first, round-robin between API
keys within a priority, FIFO within a key, the documented bound on overtaking, positions in the real order; and the
same through the real queue and store with in-process stand-in workers (no binaries). The real-server test with
two API keys: tests/integration/test_fairness.py."""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import anyio
import msgspec
import pytest

from core.events.bus import EventBus
from core.generation.requests import Txt2ImgRequest
from core.generation.specs import Txt2ImgJob
from core.job_types import JOB_CODEC
from core.jobs.queue import SUBMITTER, JobQueue
from core.jobs.schemas import ANONYMOUS
from core.store.sqlite import STORE_FILE, SqliteStore
from core.workers.pool import FairOrder
from tests.unit.test_workers import StandIn, pool_of


def drain(order: FairOrder) -> list[str]:
    taken = []
    while (job_id := order.pop()) is not None:
        taken.append(job_id)
    return taken


def test_one_key_one_priority_is_plain_fifo() -> None:
    order = FairOrder()
    for index in range(5):
        order.push(f"j{index}")
    assert [order.position(f"j{index}") for index in range(5)] == [1, 2, 3, 4, 5]
    assert drain(order) == ["j0", "j1", "j2", "j3", "j4"]


def test_higher_priority_first_fifo_within_a_priority() -> None:
    order = FairOrder()
    for job_id, priority in [("a", 0), ("b", 5), ("c", -3), ("d", 5), ("e", 0), ("f", 10)]:
        order.push(job_id, priority)
    assert drain(order) == ["f", "b", "d", "a", "e", "c"]


def test_one_keys_hundred_jobs_do_not_hold_back_anothers_one() -> None:
    order = FairOrder()
    for index in range(100):
        order.push(f"a{index}", key="key-a")
    order.push("b0", key="key-b")
    assert order.position("b0") == 2  # behind a0 (older, never-served keys go oldest first), ahead of a1..a99
    assert drain(order)[:3] == ["a0", "b0", "a1"]


def test_round_robin_between_keys_fifo_within_each() -> None:
    order = FairOrder()
    for job_id, key in [("a0", "A"), ("a1", "A"), ("a2", "A"), ("b0", "B"), ("b1", "B"), ("c0", "C")]:
        order.push(job_id, key=key)
    expected = ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert [order.position(job_id) for job_id in expected] == [1, 2, 3, 4, 5, 6]
    assert drain(order) == expected


def test_a_key_served_recently_waits_its_turn_when_it_comes_back() -> None:
    order = FairOrder()
    for job_id, key in [("a0", "A"), ("a1", "A"), ("b0", "B")]:
        order.push(job_id, key=key)
    assert order.pop() == "a0"
    assert order.pop() == "b0"  # B empties after its turn ...
    order.push("b1", key="B")  # ... and comes back: A was served before B, so A goes first
    assert drain(order) == ["a1", "b1"]


def test_a_key_is_remembered_when_the_queue_runs_empty() -> None:
    """A's first job is taken while it is alone; B's job that arrives after A's next ones still goes first."""
    order = FairOrder()
    order.push("a0", key="A")
    assert order.pop() == "a0"
    for job_id, key in [("a1", "A"), ("a2", "A"), ("b0", "B")]:
        order.push(job_id, key=key)
    assert order.position("b0") == 1
    assert drain(order) == ["b0", "a1", "a2"]


def test_a_cancelled_job_leaves_the_order() -> None:
    order = FairOrder()
    for job_id, key in [("a0", "A"), ("b0", "B"), ("a1", "A"), ("b1", "B")]:
        order.push(job_id, key=key)
    order.remove("a0")  # the head of A's turn: A ranks by a1 now, after b0
    order.remove("missing")
    assert "a0" not in order and len(order) == 3
    assert [order.position(job_id) for job_id in ("b0", "a1", "b1")] == [1, 2, 3]
    assert drain(order) == ["b0", "a1", "b1"]


@pytest.mark.parametrize("seed", range(20))
def test_positions_are_the_real_order_and_the_bound_holds(seed: int) -> None:
    """Random pushes, cancels and pops: every position is where the job really goes, higher priorities always go
    first, FIFO holds within a key and priority, and between two jobs of a key at most one job of each other key
    with jobs pending at that priority goes."""
    rng = random.Random(seed)
    order, info, counter = FairOrder(), dict[str, tuple[int, str]](), 0
    for _ in range(60):
        action = rng.random()
        if action < 0.6 or not len(order):
            job_id, priority, key = f"j{counter}", rng.choice([-1, 0, 0, 2]), rng.choice("ABCD")
            counter += 1
            order.push(job_id, priority, key)
            info[job_id] = (priority, key)
        elif action < 0.7:
            order.remove(rng.choice([job_id for job_id in info if job_id in order]))
        else:
            order.pop()
    pending = [job_id for job_id in info if job_id in order]
    positions = {job_id: order.position(job_id) for job_id in pending}
    taken = drain(order)
    assert [positions[job_id] for job_id in taken] == list(range(1, len(taken) + 1))
    assert sorted(taken) == sorted(pending)
    priorities = [info[job_id][0] for job_id in taken]
    assert priorities == sorted(priorities, reverse=True)
    for priority in set(priorities):
        level = [info[job_id][1] for job_id in taken if info[job_id][0] == priority]
        for key in set(level):
            mine = [index for index, each in enumerate(level) if each == key]
            for start, end in itertools.pairwise(mine):
                between = level[start + 1 : end]
                assert len(between) == len(set(between))  # at most one job of each other key
        for key in set(level):  # FIFO within a key
            jobs = [job_id for job_id in taken if info[job_id] == (priority, key)]
            assert jobs == sorted(jobs, key=lambda job_id: int(job_id[1:]))


# ------------------------------------------------------------------- through the real queue, with stand-ins


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    yield opened
    opened.close()


def spec(prompt: str, priority: int = 0) -> Txt2ImgJob:
    return Txt2ImgJob(request=Txt2ImgRequest(prompt=prompt, seed=1, priority=priority))


async def submit_as(queue: JobQueue, key: str, prompt: str, priority: int = 0) -> str:
    token = SUBMITTER.set(key)
    try:
        return (await queue.submit(spec(prompt, priority))).job_id
    finally:
        SUBMITTER.reset(token)


async def test_the_queue_runs_jobs_by_priority_and_key_and_records_the_key_id(
    store: SqliteStore, tmp_path: Path
) -> None:
    queue, pool, stand_in = JobQueue(store, tmp_path, EventBus()), pool_of("only"), StandIn()
    first = await submit_as(queue, "key-a", "a0")
    ids = [await submit_as(queue, "key-a", f"a{index}") for index in range(1, 4)]
    b0 = await submit_as(queue, "key-b", "b0")
    urgent = await submit_as(queue, ANONYMOUS, "urgent", priority=5)
    assert [queue.position(job_id) for job_id in (urgent, first, b0, *ids)] == [1, 2, 3, 4, 5, 6]
    record = await store.job(b0)  # stored: survives a restart
    assert record is not None and record.spec is not None and record.spec.key_id == "key-b"
    assert (await queue.get(b0)).params.priority == 0  # type: ignore[attr-defined]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(queue.run_worker, stand_in.execute, "generation", pool)
        for count in range(1, 7):
            await stand_in.wait_started(count)
            if count == 1:  # a later job of higher priority still goes before the pending ones
                await submit_as(queue, "key-c", "c0", priority=1)
            stand_in.gates[stand_in.started[-1]].set()
        await stand_in.wait_started(7)
        stand_in.gates[stand_in.started[-1]].set()
        with anyio.fail_after(10):
            while queue.active:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert stand_in.started == ["urgent", "c0", "a0", "b0", "a1", "a2", "a3"]


async def test_pending_jobs_after_a_restart_keep_their_key_and_priority(store: SqliteStore, tmp_path: Path) -> None:
    queue = JobQueue(store, tmp_path, EventBus())
    a0, a1 = [await submit_as(queue, "key-a", f"a{index}") for index in range(2)]
    b0 = await submit_as(queue, "key-b", "b0")
    low = await submit_as(queue, "key-b", "low", priority=-2)
    again = JobQueue(store, tmp_path, EventBus())
    await again.restore()
    assert [again.position(job_id) for job_id in (a0, b0, a1, low)] == [1, 2, 3, 4]


# ------------------------------------------------------------------------ who submitted: the key's id, never the key


async def test_the_submitter_is_the_id_of_the_key_the_request_came_with(store: SqliteStore) -> None:
    from core.login_sessions import LoginSessions
    from core.settings import Settings
    from litestar_app.security import SESSION_COOKIE, RequestFacts, SecurityPolicy, key_id

    settings = msgspec.convert({"auth": {"api_keys": ["alpha-key", "bravo-key"]}}, Settings)
    sessions = LoginSessions(store, b"s" * 32)
    policy = SecurityPolicy(settings, sessions)

    def facts(**headers: str) -> RequestFacts:
        return RequestFacts("POST", "/txt2img", headers, {}, "http")

    alpha, bravo = key_id(b"alpha-key"), key_id(b"bravo-key")
    assert alpha != bravo and alpha.startswith("key-") and "alpha" not in alpha
    assert policy.submitter(facts(authorization="Bearer alpha-key")) == alpha
    assert policy.submitter(facts(**{"x-api-key": "bravo-key"})) == bravo
    basic = base64.b64encode(b"user:bravo-key").decode()
    assert policy.submitter(facts(authorization=f"Basic {basic}")) == bravo
    cookie = f"{SESSION_COOKIE}={await sessions.issue('alpha-key')}"
    assert policy.submitter(facts(cookie=cookie)) == alpha  # a browser's login counts as its key
    assert policy.submitter(facts(authorization="Bearer wrong")) == ANONYMOUS
    assert SecurityPolicy(Settings(), sessions).submitter(facts(authorization="Bearer alpha-key")) == ANONYMOUS


async def test_a_job_taken_while_a_load_waits_stays_first_in_line(store: SqliteStore, tmp_path: Path) -> None:
    """A load waits for a running job and holds back new ones: a job taken out of the order for the idle worker
    meanwhile waits for the load, and is still first in line."""
    queue, pool, stand_in = JobQueue(store, tmp_path, EventBus()), pool_of("w1", "w2"), StandIn()
    loaded, release = anyio.Event(), anyio.Event()

    async def load() -> None:
        async with pool.exclusive():
            loaded.set()
            await release.wait()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(queue.run_worker, stand_in.execute, "generation", pool)
        await submit_as(queue, "key-a", "a0")
        await stand_in.wait_started(1)
        tasks.start_soon(load)  # waits for a0
        await anyio.sleep(0.05)
        taken = await submit_as(queue, "key-a", "a1")  # the idle worker's: taken, then waits for the load
        await anyio.sleep(0.05)
        other = await submit_as(queue, "key-b", "b0")
        assert (await queue.get(taken)).status == "pending"
        assert (queue.position(taken), queue.position(other)) == (1, 2)
        stand_in.gates["a0"].set()
        await loaded.wait()
        release.set()
        await stand_in.wait_started(3)
        assert stand_in.started == ["a0", "a1", "b0"]
        tasks.cancel_scope.cancel()
