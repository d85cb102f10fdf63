"""[[workers]] settings, device selection, and the worker pool's scheduling driven through the real queue and store
with in-process stand-ins for the jobs (no binaries): N jobs at once, FIFO, cancel of one, model affinity, loads
waiting for running jobs. The real-binary tests: tests/integration/test_workers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from core.events.bus import EventBus
from core.generation.requests import Txt2ImgRequest
from core.generation.specs import Txt2ImgJob
from core.job_types import JOB_CODEC
from core.jobs.queue import JobQueue, ProgressReport
from core.jobs.records import JobRecord
from core.settings import SettingsError, load_settings
from core.store.sqlite import STORE_FILE, SqliteStore
from core.workers.pool import Worker, WorkerPool, WorkerSpec, choose
from runners.devices import DEVICE_VARIABLES, NoDeviceSelection, device_environment


def write(tmp_path: Path, toml: str) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    return config


def test_default_is_one_worker_on_the_servers_backend(tmp_path: Path) -> None:
    [worker] = load_settings(write(tmp_path, ""), environ={}).worker_list()
    assert (worker.name, worker.backend, worker.device, worker.threads) == ("cpu0", "cpu", "", 0)


def test_workers_from_the_config(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[[workers]]\nname = "gpu0"\nbackend = "cuda"\ndevice = "0"\nmemory_mib = 22000\n'
        '[[workers]]\nname = "cpu-a"\nthreads = 4\n',
    )
    gpu, cpu = load_settings(config, environ={}).worker_list()
    assert (gpu.name, gpu.backend, gpu.device, gpu.memory_mib) == ("gpu0", "cuda", "0", 22000)
    assert (cpu.name, cpu.backend, cpu.threads) == ("cpu-a", "cpu", 4)


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ('[[workers]]\nname = "a"\n[[workers]]\nname = "a"\n', "'a' is used twice"),
        ('[[workers]]\nname = "a"\ndevice = "1"\n', r"workers\[0\].device: backend 'cpu' has no device selection"),
        ('[[workers]]\nname = "a"\nthreads = -1\n', r"workers\[0\].threads"),
        ('[[workers]]\nname = "a b"\n', r"workers\[0\].name"),
        ("[[workers]]\nthreads = 1\n", "name"),
    ],
)
def test_bad_workers_are_reported(tmp_path: Path, toml: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        load_settings(write(tmp_path, toml), environ={})


def test_each_backend_selects_devices_with_its_own_variable() -> None:
    assert device_environment("cuda", "1") == {"CUDA_VISIBLE_DEVICES": "1"}
    assert device_environment("rocm", "0,1") == {"HIP_VISIBLE_DEVICES": "0,1"}
    assert device_environment("vulkan-lavapipe", "0") == {"GGML_VK_VISIBLE_DEVICES": "0"}  # a name's prefix
    assert device_environment("cpu", "") == {}
    with pytest.raises(NoDeviceSelection):
        device_environment("cpu", "0")
    assert DEVICE_VARIABLES["cpu"] is None


# ----------------------------------------------------------------------------------- scheduling, with stand-ins


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    yield opened
    opened.close()


def spec(prompt: str) -> Txt2ImgJob:
    return Txt2ImgJob(request=Txt2ImgRequest(prompt=prompt, seed=1))


def pool_of(*names: str) -> WorkerPool:
    return WorkerPool([WorkerSpec(name, "cpu", Path("sd-server")) for name in names])


class StandIn:
    """An executor whose jobs run until the test lets each go: what runs at once is observable."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, anyio.Event] = {}

    async def execute(self, record: JobRecord, report: ProgressReport) -> list[str]:
        prompt = record.spec.request.prompt
        self.started.append(prompt)
        self.gates[prompt] = anyio.Event()
        await self.gates[prompt].wait()
        return []

    async def wait_started(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.started) < count:
                await anyio.sleep(0.01)


async def test_two_workers_run_two_jobs_at_once_in_fifo_order(store: SqliteStore, tmp_path: Path) -> None:
    queue, pool, stand_in = JobQueue(store, tmp_path, EventBus()), pool_of("a", "b"), StandIn()
    ids = [(await queue.submit(spec(f"p{i}"))).job_id for i in range(4)]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(queue.run_worker, stand_in.execute, "generation", pool)
        await stand_in.wait_started(2)
        await anyio.sleep(0.05)
        # Two at once, the third waits for an idle worker (the two start in either order: each first commits its
        # `processing` status off the loop).
        assert sorted(stand_in.started) == ["p0", "p1"]
        assert [job.job_id for job in queue.running_jobs()] == ids[:2]
        assert {(await queue.get(i)).worker for i in ids[:2]} == {"a", "b"}
        assert (await queue.get(ids[2])).status == "pending"
        freed = (await queue.get(ids[1])).worker
        stand_in.gates["p1"].set()
        await stand_in.wait_started(3)
        assert stand_in.started[2] == "p2" and (await queue.get(ids[2])).worker == freed
        await queue.cancel(ids[0])  # cancel reaches p0's worker only: p2 keeps running
        await stand_in.wait_started(4)
        assert (await queue.get(ids[0])).status == "cancelled"
        assert (await queue.get(ids[2])).status == "processing"
        stand_in.gates["p2"].set()
        stand_in.gates["p3"].set()
        with anyio.fail_after(10):
            while queue.active:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert [(await queue.get(i)).status for i in ids] == ["cancelled", "completed", "completed", "completed"]


async def test_a_job_prefers_the_worker_holding_its_model() -> None:
    pool = pool_of("a", "b", "c")
    pool["c"].models = {"sd15.safetensors": 100}
    assert await pool.assign("j1", "sd15.safetensors") == "c"
    assert await pool.assign("j2", "sd15.safetensors") == "a"  # the holder is busy: the first idle one
    pool.release("c")
    assert await pool.assign("j3", None) == "b"


def caching(name: str, budget: int, **models: int) -> Worker:
    """A stand-in worker on our worker binary with a memory budget, holding `models` (name -> MiB, LRU first)."""
    worker = Worker(WorkerSpec(name, "cpu", Path("sd-server"), Path("sdcpp-worker"), memory_mib=budget))
    worker.models = dict(models)
    return worker


def test_the_scheduler_prefers_residence_then_room_then_the_least_eviction() -> None:
    full = caching("full", 1000, a=600, b=400)  # d (300) evicts a: 600 MiB
    roomy = caching("roomy", 1000, c=500)  # d fits beside c
    tight = caching("tight", 1000, e=200, f=600)  # d evicts e: 200 MiB
    sizes = {"d": 300, "c": 500}
    assert choose([full, roomy, tight], "c", sizes) is roomy  # resident: no load
    assert choose([full, roomy, tight], "d", sizes) is roomy  # room without evicting
    assert choose([full, tight], "d", sizes) is tight  # evicts the fewest MiB
    assert full.evictions("d", 300) == ["a"] and tight.evictions("d", 300) == ["e"]
    assert full.evictions("d", 1200) == ["a", "b"]  # more than the budget: everything else goes
    assert choose([full, roomy], None, sizes) is full  # no model named: the first declared


def test_a_worker_without_a_budget_or_on_sd_server_holds_one_model() -> None:
    unbudgeted = caching("w", 0, a=10)
    server = Worker(WorkerSpec("s", "cpu", Path("sd-server"), memory_mib=10_000))
    server.models = {"a": 10}
    assert unbudgeted.evictions("b", 10) == ["a"] and server.evictions("b", 10) == ["a"]
    assert unbudgeted.cost("a") == (0, 0) and unbudgeted.cost("b", 10) == (2, 10)


def test_a_used_model_becomes_the_most_recently_used() -> None:
    worker = caching("w", 1000, a=400, b=400)
    worker.touch("a")
    assert list(worker.models) == ["b", "a"] and worker.model == "a"
    assert worker.evictions("c", 400) == ["b"]  # the least recently used goes first


async def test_a_load_waits_for_running_jobs_and_holds_back_new_ones() -> None:
    pool, order = pool_of("a", "b"), list[tuple[str, object]]()
    await pool.assign("running")
    async with anyio.create_task_group() as tasks:

        async def load() -> None:
            async with pool.exclusive() as workers:
                order.append(("load", [w.state for w in workers]))

        async def job() -> None:
            order.append(("job", await pool.assign("next")))

        tasks.start_soon(load)
        await anyio.sleep(0.05)
        tasks.start_soon(job)
        await anyio.sleep(0.05)
        assert order == []  # the load waits for the running job; the job waits for the load (FIFO)
        pool.release("a")
    assert order == [("load", ["loading", "loading"]), ("job", "a")]


async def test_a_job_cancelled_while_waiting_for_a_worker_never_runs(store: SqliteStore, tmp_path: Path) -> None:
    queue, pool, stand_in = JobQueue(store, tmp_path, EventBus()), pool_of("only"), StandIn()
    ids = [(await queue.submit(spec(f"p{i}"))).job_id for i in range(3)]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(queue.run_worker, stand_in.execute, "generation", pool)
        await stand_in.wait_started(1)
        await queue.cancel(ids[1])  # pending: the scheduler already waits to hand it to the busy worker
        stand_in.gates["p0"].set()
        await stand_in.wait_started(2)
        assert stand_in.started == ["p0", "p2"] and (await queue.get(ids[2])).worker == "only"
        stand_in.gates["p2"].set()
        with anyio.fail_after(10):
            while queue.active:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert [(await queue.get(i)).status for i in ids] == ["completed", "cancelled", "completed"]
    assert pool["only"].state == "idle" and pool["only"].job_id is None


def test_a_backend_table_may_name_a_builds_folder(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[[workers]]\nname = "cpu0"\n[[workers]]\nname = "gpu0"\nbackend = "vulkan"\ndevice = "0"\n'
        '[backends.vulkan]\nfolder = "/opt/vk"\nsd_server = "/elsewhere/sd-server"\n',
    )
    settings = load_settings(config, environ={})
    vulkan = settings.selected_backend("vulkan")
    assert (vulkan.sd_cli, vulkan.sd_server, vulkan.sd_worker) == (
        "/opt/vk/sd-cli",
        "/elsewhere/sd-server",  # a binary named in the table wins over the folder's
        "/opt/vk/sdcpp-worker",
    )


def test_a_backend_table_without_binaries_is_refused_naming_it(tmp_path: Path) -> None:
    config = write(tmp_path, '[backends.vulkan]\nsd_cli = "/opt/vk/sd-cli"\n')
    with pytest.raises(SettingsError, match=r"backends\.vulkan: give `folder`.*or both `sd_cli` and `sd_server`"):
        load_settings(config, environ={})
