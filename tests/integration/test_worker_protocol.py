"""The real `sdcpp-worker`, driven line by line as ResidentWorker drives it: every answer decodes strictly as
runners/worker_protocol.py's structs (no unknown, missing or mistyped field), a malformed job line is refused
with an `error` naming the field and the rule, a job that fails or throws answers `failed`, a cancel line stops
the running job at a sampling step (or drops a waiting one) with `cancelled`, and after each the same process,
its model still loaded, runs the next job. Load and unload lines keep several models resident, a job runs on the one
it names, and switching between them loads nothing (the worker's own load count)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec
import pytest
from PIL import Image

from core.settings import load_settings
from runners.flags import build_argv
from runners.options import CONTEXT_FLAGS, ContextOptions
from runners.resident_worker import ResidentWorker, WorkerFailed
from runners.worker_protocol import (
    Cancelled,
    CancelRequest,
    Done,
    Failed,
    Fatal,
    JobEvent,
    JobRequest,
    LineError,
    LoadFailed,
    LoadRequest,
    Message,
    Models,
    Preview,
    PreviewRequest,
    Progress,
    Ready,
    ResidentModel,
    Saved,
    UnloadRequest,
)
from tests.conftest import TINY_LOAD

pytestmark = pytest.mark.integration
ANSWER_TIMEOUT_S = 120.0
TINY_MIB = 18  # the tiny set by its files' sizes: DiT 2 + LLM 10 + TAE 6 MiB (each file rounded up)


def decode_strictly(line: str) -> Message:
    """The answer as a struct; fails unless the line holds exactly the struct's fields, each of its type."""
    message = msgspec.json.decode(line, type=Message)
    assert msgspec.to_builtins(message) == json.loads(line), f"fields differ from {type(message).__name__}: {line}"
    return message


def load_argv(models: Path) -> list[str]:
    context = ContextOptions(
        diffusion=str(models / "diffusion_models" / TINY_LOAD["model_name"]),
        llm=str(models / "llm" / TINY_LOAD["llm"]),
        taesd=str(models / "taesd" / TINY_LOAD["taesd"]),
        lora_dir=str(models / "loras"),
    )
    return [load_settings().selected_backend().sd_worker, *build_argv(CONTEXT_FLAGS, context)]


class Worker:
    """One `sdcpp-worker` process; its stdout lines are read on a thread so that a read can time out."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self.log = log.open("w")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def answer(self) -> Message:
        line = self.lines.get(timeout=ANSWER_TIMEOUT_S)
        assert line is not None, f"the worker exited with code {self.process.wait()}"
        return decode_strictly(line)

    def run(self, job: JobRequest) -> list[Message]:
        """The job's answers, up to and including its `done` or `failed`."""
        self.send(msgspec.json.encode(job).decode())
        return self.answers_until_end()

    def answers_until_end(self) -> list[Message]:
        answers = [self.answer()]
        while not isinstance(answers[-1], (Done, Failed, Cancelled, LineError)):
            answers.append(self.answer())
        return answers

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def worker(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    started = Worker(load_argv(tiny_models_dir), tmp_path_factory.mktemp("worker-protocol") / "stderr.log")
    try:
        assert isinstance(started.answer(), Ready)
        assert started.answer() == Models([ResidentModel("default", TINY_MIB)], 1)  # the first model, unnamed
        yield started
    finally:
        started.close()
    assert started.process.returncode == 0  # stdin closed: the worker ends on its own


def good_job(folder: Path, job_id: str, **changes: Any) -> JobRequest:
    folder.mkdir(parents=True, exist_ok=True)
    job = JobRequest(
        job_id=job_id,
        mode="img_gen",
        args=["--prompt", "a cat", "-W", "64", "-H", "64", "--steps", "2", "--seed", "7"],
        output=str(folder / f"{job_id}_%d.png"),
    )
    return msgspec.structs.replace(job, **changes)


def assert_runs_a_good_job(worker: Worker, pid: int, folder: Path, job_id: str) -> None:
    answers = worker.run(good_job(folder, job_id))
    assert answers[-1] == Done(job_id, [str(folder / f"{job_id}_0.png")]), answers
    assert Image.open(folder / f"{job_id}_0.png").size == (64, 64)
    assert worker.process.pid == pid and worker.process.poll() is None  # the same process, still up


def test_several_models_stay_resident_and_switching_loads_nothing(worker: Worker, tmp_path: Path) -> None:
    pid = worker.process.pid
    flags = load_argv(tiny_models_dir_of(worker))[1:]
    worker.send(msgspec.json.encode(LoadRequest("second", flags)).decode())
    assert worker.answer() == Models([ResidentModel("default", TINY_MIB), ResidentModel("second", TINY_MIB)], 2)
    for index, model in enumerate(["second", "default", "second", "default"]):
        answers = worker.run(good_job(tmp_path, f"on-{index}", model=model))
        assert isinstance(answers[-1], Done), answers
    unknown = worker.run(good_job(tmp_path, "nowhere", model="not-loaded"))
    assert unknown[-1] == Failed("nowhere", "model 'not-loaded' is not resident on this worker")
    worker.send(msgspec.json.encode(LoadRequest("broken", ["--diffusion-model", str(tmp_path / "none")])).decode())
    failed = worker.answer()
    assert isinstance(failed, LoadFailed) and failed.model == "broken"
    worker.send('{"unload": "second", "args": []}')
    assert worker.answer() == LineError("refused: unknown field 'args' in an unload line")
    worker.send(msgspec.json.encode(UnloadRequest("second")).decode())
    # four switches and a failed load later: one model left, no load but the failed one (3 = 2 + the failed try)
    assert worker.answer() == Models([ResidentModel("default", TINY_MIB)], 3)
    assert_runs_a_good_job(worker, pid, tmp_path, "after")  # a job naming no model: the one left


def tiny_models_dir_of(worker: Worker) -> Path:
    """The models folder the worker was started with (its --diffusion-model's grandparent)."""
    argv = worker.process.args
    assert isinstance(argv, list)
    return Path(argv[argv.index("--diffusion-model") + 1]).parent.parent


def test_a_job_answers_progress_previews_and_done(worker: Worker, tmp_path: Path) -> None:
    preview = tmp_path / "preview.png"
    job = good_job(tmp_path, "good", preview=PreviewRequest(mode="proj", path=str(preview)))
    answers = worker.run(job)
    progress = [a for a in answers if isinstance(a, Progress)]
    previews = [a for a in answers if isinstance(a, Preview)]
    # Only finished sampling steps: the step 0 sd.cpp reports as sampling starts is no step.
    assert [(p.job_id, p.step, p.steps) for p in progress] == [("good", 1, 2), ("good", 2, 2)]
    assert previews and all(p.job_id == "good" and p.path == str(preview) and p.frames == 1 for p in previews)
    assert Image.open(preview).size == (8, 8)  # a proj preview is latent-sized: an eighth of the image
    assert answers[-1] == Done("good", [str(tmp_path / "good_0.png")])
    assert "[INFO ]" in worker.log_path.read_text()  # logs go to stderr, answers alone to stdout


@pytest.mark.parametrize(
    ("interval", "expected"),
    [(1, [1, 2, 3, 4, 5, 6, 7]), (3, [3, 6, 7]), (10, [7])],
    ids=["every step", "every third and the last", "the last only"],
)
def test_previews_are_decoded_only_at_the_steps_their_interval_names(
    worker: Worker, tmp_path: Path, interval: int, expected: list[int]
) -> None:
    """The pinned library ignores its own preview interval; the worker's keeps the other steps from being decoded
    (what makes OpenAI's streamed partial images cheap), in each image of a batch."""
    preview = tmp_path / "preview.png"
    args = ["--prompt", "a cat", "-W", "64", "-H", "64", "--steps", "7", "--seed", "7", "-b", "2"]
    job = good_job(tmp_path, "spaced", args=args, preview=PreviewRequest("proj", str(preview), interval=interval))
    answers = worker.run(job)
    steps = [a.step for a in answers if isinstance(a, Preview)]
    assert steps == expected * 2, answers
    assert isinstance(answers[-1], Done) and len(answers[-1].outputs) == 2


def job_line(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = msgspec.to_builtins(good_job(tmp_path, "bad"))
    line.update(changes)
    return {key: value for key, value in line.items() if value is not msgspec.UNSET}


MALFORMED: list[tuple[str, dict[str, Any] | str, str]] = [
    ("not JSON", "this is not json", "not a JSON request line"),
    ("not an object", "[1, 2]", "a request line must be a JSON object"),
    ("no job_id", {"job_id": msgspec.UNSET}, "'job_id' is missing"),
    ("a number as job_id", {"job_id": 5}, "'job_id' must be a string"),
    ("an empty job_id", {"job_id": ""}, "'job_id' must not be empty"),
    ("no mode", {"mode": msgspec.UNSET}, "'mode' is missing"),
    ("an unknown mode", {"mode": "txt2img"}, '\'mode\' must be "img_gen" or "vid_gen", not "txt2img"'),
    ("args as one string", {"args": "--prompt cat"}, "'args' must be a list of strings"),
    ("a number in args", {"args": ["--steps", 2]}, "'args' must be a list of strings (item 1 is not)"),
    ("no output", {"output": msgspec.UNSET}, "'output' is missing"),
    ("output as a list", {"output": ["a.png"]}, "'output' must be a string"),
    ("an unknown field", {"seed": 7}, "unknown field 'seed'"),
    ("preview as a string", {"preview": "proj"}, "'preview' must be an object or null"),
    ("no preview mode", {"preview": {"path": "p.png"}}, "'preview.mode' must be a string"),
    ("an unknown preview mode", {"preview": {"mode": "fancy", "path": "p.png"}}, "'preview.mode' must be \"proj\""),
    ("no preview path", {"preview": {"mode": "proj"}}, "'preview.path' is missing"),
    ("a number as preview path", {"preview": {"mode": "proj", "path": 3}}, "'preview.path' must be a string"),
    ("noisy as a string", {"preview": {"mode": "proj", "path": "p.png", "noisy": "yes"}}, "'preview.noisy' must be"),
    ("an unknown preview field", {"preview": {"mode": "proj", "path": "p.png", "fps": 4}}, "'preview.fps'"),
    ("a zero interval", {"preview": {"mode": "proj", "path": "p.png", "interval": 0}}, "'preview.interval' must be"),
    ("a text interval", {"preview": {"mode": "proj", "path": "p.png", "interval": "2"}}, "'preview.interval' must be"),
]


@pytest.mark.parametrize(("wrong", "line", "error"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_a_malformed_line_is_refused_and_the_worker_goes_on(
    worker: Worker, tmp_path: Path, wrong: str, line: dict[str, Any] | str, error: str
) -> None:
    pid = worker.process.pid
    worker.send(line if isinstance(line, str) else json.dumps(job_line(tmp_path, **line)))
    answer = worker.answer()
    assert isinstance(answer, LineError), answer
    assert error in answer.error, (wrong, answer.error)
    sent_job_id = line.get("job_id", "bad") if isinstance(line, dict) else None
    assert answer.job_id == (sent_job_id if isinstance(sent_job_id, str) else None)  # echoed when it is a string
    assert not list(tmp_path.glob("bad_*.png"))  # nothing ran
    assert_runs_a_good_job(worker, pid, tmp_path, "after")


FAILING: list[tuple[str, list[str], str]] = [
    ("an unknown flag", ["--no-such-flag"], "invalid generation arguments"),
    ("a missing input image", ["--init-img", "/nonexistent/in.png"], "load image from '/nonexistent/in.png' failed"),
    ("a folder that cannot be listed (an exception)", ["--pm-id-images-dir", "/nonexistent"], "the job failed: "),
]


@pytest.mark.parametrize(("why", "args", "error"), FAILING, ids=[case[0] for case in FAILING])
def test_a_failing_job_fails_alone_and_the_model_stays_loaded(
    worker: Worker, tmp_path: Path, why: str, args: list[str], error: str
) -> None:
    pid = worker.process.pid
    job = good_job(tmp_path, "doomed")
    answers = worker.run(msgspec.structs.replace(job, args=[*job.args, *args]))
    assert isinstance(answers[-1], Failed) and answers[-1].job_id == "doomed", answers
    assert error in answers[-1].error, (why, answers[-1].error)
    assert_runs_a_good_job(worker, pid, tmp_path, "after-failure")


def test_a_model_that_cannot_load_is_fatal(tiny_models_dir: Path, tmp_path: Path) -> None:
    argv = load_argv(tiny_models_dir)
    argv[argv.index("--diffusion-model") + 1] = str(tmp_path / "missing.safetensors")
    broken = Worker(argv, tmp_path / "stderr.log")
    answer = broken.answer()
    assert isinstance(answer, Fatal) and answer.error, answer
    assert broken.lines.get(timeout=ANSWER_TIMEOUT_S) is None  # nothing after it: the worker exits
    assert broken.process.wait(timeout=30) in (1, 2)
    broken.close()


def test_resident_worker_fails_a_refused_job_at_once_and_goes_on(tiny_models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        resident = ResidentWorker(load_argv(tiny_models_dir), ready_timeout_s=120, stall_timeout_s=120)
        async with anyio.create_task_group() as tasks:
            await tasks.start(resident.run)
            assert resident.process is not None
            pid = resident.process.pid
            with anyio.fail_after(30), pytest.raises(WorkerFailed, match="refused the job: refused: 'job_id' must not"):
                await resident.generate(good_job(tmp_path, ""), lambda event: None)  # not after the stall timeout
            events: list[JobEvent] = []
            outputs = await resident.generate(good_job(tmp_path, "next"), events.append)
            assert outputs == [str(tmp_path / "next_0.png")] and events
            assert resident.alive and resident.process.pid == pid
            await resident.stop()

    anyio.run(scenario)


SLOW_ARGS = ["--prompt", "slow", "-W", "256", "-H", "256", "--steps", "50", "--seed", "7"]


@pytest.fixture(scope="module")
def step_cancel_worker(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker that stops a cancelled job only at the end of its step, as on backends without ggml's abort
    callback (CUDA, Vulkan, ROCm); the default worker aborts the running step on the CPU backend."""
    log = tmp_path_factory.mktemp("step-cancel") / "stderr.log"
    started = Worker(load_argv(tiny_models_dir), log, env={"SDCPP_WORKER_STEP_CANCEL_ONLY": "1"})
    try:
        assert isinstance(started.answer(), Ready)
        assert isinstance(started.answer(), Models)
        yield started
    finally:
        started.close()


@pytest.mark.parametrize("stops", ["within the step", "at the step's end"])
def test_a_cancel_line_stops_the_running_job_at_a_step_and_the_model_stays_loaded(
    request: pytest.FixtureRequest, tmp_path: Path, stops: str
) -> None:
    worker: Worker = request.getfixturevalue("worker" if stops == "within the step" else "step_cancel_worker")
    pid = worker.process.pid
    worker.send(msgspec.json.encode(good_job(tmp_path, "slow", args=SLOW_ARGS)).decode())
    answers = [worker.answer()]
    while not (isinstance(answers[-1], Progress) and answers[-1].step >= 1):
        answers.append(worker.answer())
    worker.send(msgspec.json.encode(CancelRequest("slow")).decode())
    ended = worker.answers_until_end()
    answers += ended
    assert ended[-1] == Cancelled("slow"), ended[-3:]
    steps = [a.step for a in answers if isinstance(a, Progress)]
    assert steps[-1] < 50 and all(isinstance(a, (Progress, Cancelled)) for a in answers)  # stopped mid-sampling
    assert not list(tmp_path.glob("slow_*.png"))  # nothing saved
    if stops == "at the step's end":  # the library's own sampling ended it: no graph was aborted
        assert "operation aborted" not in worker.log_path.read_text()
    assert_runs_a_good_job(worker, pid, tmp_path, "after-cancel")


@pytest.mark.parametrize("when", ["with the job line", "at the first answer"])
def test_a_cancel_before_sampling_ends_the_job_at_its_first_step(worker: Worker, tmp_path: Path, when: str) -> None:
    """Sent with the job line, the cancel reaches the worker before the job samples: while its arguments are read
    (then it never starts) or while the library sets it up (its LoRA is loaded by library threads then: no place to
    stop), and then it stops as sampling begins. Either way: `cancelled`, no sampling step past the first, and the
    worker goes on."""
    pid = worker.process.pid
    lora_job = good_job(tmp_path, "early", args=["--prompt", "slow <lora:tiny_lora:0.7>", *SLOW_ARGS[2:]])
    worker.send(msgspec.json.encode(lora_job).decode())
    answers = [] if when == "with the job line" else [worker.answer()]  # the LoRA's loading progress, or step 0
    worker.send(msgspec.json.encode(CancelRequest("early")).decode())
    answers += worker.answers_until_end()
    assert answers[-1] == Cancelled("early"), answers[-3:]
    assert max((a.step for a in answers if isinstance(a, Progress) and a.steps == 50), default=0) <= 1, answers
    assert not list(tmp_path.glob("early_*.png"))
    assert_runs_a_good_job(worker, pid, tmp_path, "after-early-cancel")


def test_a_batch_cancelled_in_its_second_image_keeps_the_first_and_leaves_the_next_job_unchanged(
    worker: Worker, tmp_path: Path
) -> None:
    """Issue 22, defect 4: a batch cancelled mid-way kept only its preview. Each image is saved as it is finished
    (a `saved` answer), and the `cancelled` answer lists those kept."""
    pid = worker.process.pid
    [reference] = [a for a in worker.run(good_job(tmp_path, "reference")) if isinstance(a, Done)]
    batch = good_job(tmp_path, "batch", args=["--prompt", "many", "-W", "64", "-H", "64", "--steps", "20", "-b", "3"])
    worker.send(msgspec.json.encode(batch).decode())
    seen: list[int] = []
    saved: list[Saved] = []
    while not (saved and seen and 1 <= seen[-1] < 20):  # the first image is saved, the second one is sampling
        answer = worker.answer()
        if isinstance(answer, Saved):
            saved.append(answer)
            continue
        assert isinstance(answer, Progress), answer
        seen.append(answer.step)
    first = str(tmp_path / "batch_0.png")
    assert saved == [Saved("batch", first)] and 20 in seen
    worker.send(msgspec.json.encode(CancelRequest("batch")).decode())
    assert worker.answers_until_end()[-1] == Cancelled("batch", [first])
    assert sorted(tmp_path.glob("batch_*.png")) == [Path(first)]
    with Image.open(first) as kept:
        assert kept.size == (64, 64) and "Seed: " in kept.info["parameters"]
    assert_runs_a_good_job(worker, pid, tmp_path, "after-batch")
    with Image.open(reference.outputs[0]) as before, Image.open(tmp_path / "after-batch_0.png") as after:
        assert before.tobytes() == after.tobytes()  # same seed, same pixels: the cancel left no state behind


def test_a_cancel_drops_a_waiting_job_and_ignores_an_ended_one(worker: Worker, tmp_path: Path) -> None:
    pid = worker.process.pid
    worker.send(msgspec.json.encode(good_job(tmp_path, "first", args=SLOW_ARGS)).decode())
    worker.send(msgspec.json.encode(good_job(tmp_path, "waiting")).decode())
    worker.send(msgspec.json.encode(CancelRequest("waiting")).decode())
    answers = [worker.answer()]
    while not isinstance(answers[-1], Cancelled):  # at once, while the first job runs
        answers.append(worker.answer())
    assert answers[-1] == Cancelled("waiting")
    worker.send(msgspec.json.encode(CancelRequest("first")).decode())
    assert worker.answers_until_end()[-1] == Cancelled("first")
    worker.send(msgspec.json.encode(CancelRequest("first")).decode())  # ended: no answer, nothing changes
    assert_runs_a_good_job(worker, pid, tmp_path, "after-cancels")
    assert not list(tmp_path.glob("waiting_*.png")) and not list(tmp_path.glob("first_*.png"))


MALFORMED_CANCELS: list[tuple[str, str, str]] = [
    ("a number", '{"cancel": 5}', "'cancel' must be a string"),
    ("an empty job_id", '{"cancel": ""}', "'cancel' must not be empty"),
    ("another field", '{"cancel": "x", "job_id": "x"}', "unknown field 'job_id' in a cancel line"),
]


@pytest.mark.parametrize(("wrong", "line", "error"), MALFORMED_CANCELS, ids=[case[0] for case in MALFORMED_CANCELS])
def test_a_malformed_cancel_line_is_refused(worker: Worker, tmp_path: Path, wrong: str, line: str, error: str) -> None:
    pid = worker.process.pid
    worker.send(line)
    answer = worker.answer()
    assert isinstance(answer, LineError) and error in answer.error and answer.job_id is None, (wrong, answer)
    assert_runs_a_good_job(worker, pid, tmp_path, "after-bad-cancel")


def test_resident_worker_cancels_a_job_and_keeps_its_model(tiny_models_dir: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        resident = ResidentWorker(load_argv(tiny_models_dir), ready_timeout_s=120, stall_timeout_s=120)
        async with anyio.create_task_group() as tasks:
            await tasks.start(resident.run)
            assert resident.process is not None
            pid = resident.process.pid
            stepping = anyio.Event()
            with anyio.CancelScope() as job:  # what the queue does to a running job's engine call

                async def cancel_once_stepping() -> None:
                    await stepping.wait()
                    job.cancel()

                tasks.start_soon(cancel_once_stepping)
                slow = good_job(tmp_path, "slow", args=SLOW_ARGS)
                await resident.generate(
                    slow, lambda event: stepping.set() if isinstance(event, Progress) and event.step >= 1 else None
                )
            assert job.cancel_called and resident.alive and resident.process.pid == pid
            assert not list(tmp_path.glob("slow_*.png"))
            outputs = await resident.generate(good_job(tmp_path, "next"), lambda event: None)
            assert outputs == [str(tmp_path / "next_0.png")] and resident.process.pid == pid
            await resident.stop()

    anyio.run(scenario)


# A fault-injecting stand-in for the worker (the one fake binary of these tests): it loads nothing, and once a job
# runs it reports steps forever without reading stdin, so a cancel line never reaches it.
STUBBORN_WORKER = """
import json, sys, time
print(json.dumps({"type": "ready"}), flush=True)
job = json.loads(sys.stdin.readline())
step = 0
while True:
    step += 1
    print(json.dumps({"type": "progress", "job_id": job["job_id"], "step": step, "steps": 10**6, "time": 0.05}),
          flush=True)
    time.sleep(0.05)
"""


def test_a_worker_that_does_not_stop_on_a_cancel_is_killed(tmp_path: Path) -> None:
    stubborn = tmp_path / "stubborn_worker.py"
    stubborn.write_text(STUBBORN_WORKER)

    async def scenario() -> None:
        resident = ResidentWorker([sys.executable, str(stubborn)], 30, stall_timeout_s=30, cancel_timeout_s=1.0)
        async with anyio.create_task_group() as tasks:
            await tasks.start(resident.run)
            stepping = anyio.Event()
            with anyio.fail_after(30), anyio.CancelScope() as job:

                async def cancel_once_stepping() -> None:
                    await stepping.wait()
                    job.cancel()

                tasks.start_soon(cancel_once_stepping)
                await resident.generate(good_job(tmp_path, "stuck"), lambda event: stepping.set())
            assert job.cancel_called and not resident.alive  # past the bound it was stopped, not left running
            assert resident.returncode is not None and resident.returncode != 0

    anyio.run(scenario)
