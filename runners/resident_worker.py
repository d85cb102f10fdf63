"""Supervision of our resident worker (`sdcpp-worker`, built from runners/worker/): it loads a model once, then runs
one generation per JSON line on stdin and answers with JSON lines on stdout (progress, previews, done or failed),
tagged with the job id; the lines are runners/worker_protocol.py's structs. Its logs, in sd-cli's format, come on
stderr.

One job runs at a time. Cancelling it (the caller of `generate` is cancelled) is cooperative: `cancel` sends a
cancel line, and the worker stops the job at its next sampling step and answers `cancelled`, its model still
loaded (how the C++ side stops safely: the top of runners/worker/worker.cpp). A worker that has not ended the job
within the bound (`cancel_timeout_s`, at least `CANCEL_TIMEOUT_S`, more for slow steps: `CANCEL_TIMEOUT_STEPS`
of the job's own step time) is killed; the owner starts a new one for the next job (the model loads again).
A worker that prints nothing for `stall_timeout_s` while a job runs is killed and the job fails saying so; a job
line the worker refuses fails that job; a line that is not a known message is logged and ignored.

Resident models: the process starts with one model (`resident_name`), and `load` / `unload` add and free others
between jobs; `models` is what it holds (least recently used first, as it reports it) and `loads` how many loads it
has made. Which to evict is its owner's choice (core/workers/).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence

import anyio
import msgspec
from anyio.abc import Process, TaskStatus

from runners.process import pump_lines, spawn, stop_process
from runners.progress import LogLine, classify
from runners.resident import ResidentProcess
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
    Progress,
    Ready,
    ResidentModel,
    Saved,
    UnloadRequest,
)

log = logging.getLogger("sdcpp_restapi.runners")
WORKER_BINARY = "sdcpp-worker"
# How long a cancelled job may take to end before its worker is killed: the worker stops at the next sampling step,
# so the bound is this floor or this many of the job's reported step times, whichever is longer (a text encoder or
# a VAE decode runs between steps and is not interrupted; past the bound, a reload is cheaper than more waiting).
CANCEL_TIMEOUT_S = 10.0
CANCEL_TIMEOUT_STEPS = 3.0


class WorkerFailed(RuntimeError):
    """The worker could not start, died, stalled, or failed a job; the message says why."""


class WorkerCancelled(WorkerFailed):
    """The worker answered `cancelled` for a job whose caller was not cancelled (someone else sent the cancel)."""


_decode = msgspec.json.Decoder(Message).decode
_encode = msgspec.json.Encoder().encode


class ResidentWorker(ResidentProcess):
    def __init__(
        self,
        argv: Sequence[str],
        ready_timeout_s: float = 600.0,
        stall_timeout_s: float = 300.0,
        cancel_timeout_s: float = CANCEL_TIMEOUT_S,
        resident_name: str = "",
    ) -> None:
        super().__init__()
        # argv: the binary, then the first model's context flags; it is resident under `resident_name`
        self.argv = [argv[0], "--resident-name", resident_name, *argv[1:]] if resident_name else list(argv)
        self.models: list[ResidentModel] = []  # as the worker reported them, least recently used first
        self.loads = 0
        self._awaiting_models = False  # a load or unload waits for the `models` answer
        self.ready_timeout_s = ready_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.cancel_timeout_s = cancel_timeout_s
        self._step_time_s = 0.0  # the running job's last reported seconds per step
        self._ready = anyio.Event()
        self._fatal: str | None = None
        self._messages, self._inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._busy = anyio.Lock()

    def _on_stdout(self, text: str) -> None:
        line = text.strip()
        if not line:
            return
        try:
            message = _decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("sdcpp-worker: ignoring a line that is not a protocol message: %.200s", line)
            return
        if isinstance(message, Ready):
            self._ready.set()
        elif isinstance(message, Fatal):
            self._fatal = message.error
        elif isinstance(message, Models):
            self.models, self.loads = message.models, message.loads
            if self._awaiting_models:
                self._messages.send_nowait(message)
        elif isinstance(message, LineError):
            log.warning("sdcpp-worker refused a request line: %s", message.error)
            if self._busy.locked():  # our job's line was refused: the job fails instead of waiting for a stall
                self._messages.send_nowait(message)
        else:
            self._messages.send_nowait(message)

    def _on_stderr(self, text: str) -> None:
        self.note_log_line(text)
        piece = classify(text)
        if isinstance(piece, LogLine) and piece.level == "ERROR":
            self.error_lines.append(piece.message.strip())
            log.warning("sdcpp-worker: %s", piece.message.strip())
        elif not isinstance(piece, LogLine) and text.strip() and "|" not in text:
            self.error_lines.append(text.strip())  # aborts and asserts print without a level
        if self.listener is not None:
            self.listener(piece)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start, signal `started` once the model is loaded, then live until the process exits or is stopped.
        Raises WorkerFailed (before `started`) if loading fails or takes too long."""
        process = await spawn(self.argv, stdin=True, env=self.env)
        self.process = process
        try:
            async with anyio.create_task_group() as pumps:
                pumps.start_soon(self._pump_stdout, process)
                pumps.start_soon(pump_lines, process.stderr, self._on_stderr)
                with anyio.move_on_after(self.ready_timeout_s):
                    async with anyio.create_task_group() as waiting:

                        async def exited() -> None:
                            await self.exited.wait()
                            waiting.cancel_scope.cancel()

                        async def ready() -> None:
                            await self._ready.wait()
                            waiting.cancel_scope.cancel()

                        waiting.start_soon(exited)
                        waiting.start_soon(ready)
                if self._ready.is_set():
                    task_status.started()
                else:
                    pumps.cancel_scope.cancel()
            self.returncode = await process.wait()
        finally:
            await self._ended(process)
            self._messages.close()
        if not self._ready.is_set():
            why = self._fatal or self.reason(f"the worker exited with code {self.returncode} while loading")
            raise WorkerFailed(
                why if self.exited.is_set() else f"the worker did not load within {self.ready_timeout_s:.0f}s"
            )

    async def _pump_stdout(self, process: Process) -> None:
        await pump_lines(process.stdout, self._on_stdout)
        self.returncode = await process.wait()
        self.exited.set()
        self._messages.close()

    async def stop(self) -> None:
        if self.process is not None:
            if self.process.stdin is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):  # already gone
                    await self.process.stdin.aclose()
            await stop_process(self.process)
            with anyio.move_on_after(5):
                await self.exited.wait()

    async def generate(self, request: JobRequest, on_event: Callable[[JobEvent], None]) -> list[str]:
        """Run one job; returns the files written. A cancelled caller cancels the job with `cancel` (shielded): the
        worker keeps its model, or, past the bound, is stopped and the owner starts a new one for the next job."""
        async with self._busy:
            if not self.alive or self.process is None or self.process.stdin is None:
                raise WorkerFailed(self.reason("the resident worker is not running"))
            self.error_lines.clear()
            self._step_time_s = 0.0
            healthy = False  # whether the worker is known to be idle and well after this call
            try:
                # Cancelled from here on, the worker may have the line (a send cancelled midway has written it):
                # `cancel` ends the job there, or, when the line never arrived, stops the worker past the bound.
                await self.process.stdin.send(_encode(request) + b"\n")
                while True:
                    with anyio.move_on_after(self.stall_timeout_s) as stalled:
                        try:
                            message = await self._inbox.receive()
                        except anyio.EndOfStream:
                            raise WorkerFailed(
                                self.reason(f"the worker exited with code {self.returncode} during the job")
                            ) from None
                    if stalled.cancelled_caught:
                        raise WorkerFailed(
                            f"the worker printed nothing for {self.stall_timeout_s:.0f}s during the job: it was stopped"
                        )
                    if getattr(message, "job_id", request.job_id) != request.job_id:
                        continue  # a late line of an earlier job
                    if isinstance(message, Done):
                        healthy = True
                        return message.outputs
                    if isinstance(message, Failed):
                        healthy = True  # the job failed; the worker goes on
                        raise WorkerFailed(message.error)
                    if isinstance(message, Cancelled):
                        healthy = True
                        raise WorkerCancelled("the job was cancelled")
                    if isinstance(message, LineError):
                        healthy = True  # the line was refused; the worker goes on
                        raise WorkerFailed(f"the worker refused the job: {message.error}")
                    if isinstance(message, Progress):
                        self._step_time_s = message.time
                    if isinstance(message, (Progress, Preview, Saved)):
                        on_event(message)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    healthy = await self.cancel(request.job_id, on_event)
                raise
            finally:
                if not healthy:  # cancelled past the bound, stalled or dead: no half-run generation may remain
                    with anyio.CancelScope(shield=True):
                        await self.stop()

    async def load(self, name: str, args: Sequence[str]) -> None:
        """Load a model (its context flags) beside the resident ones under `name`; WorkerFailed if it cannot be (the
        others stay loaded)."""
        await self._model_line(LoadRequest(name, list(args)), name)

    async def unload(self, name: str) -> None:
        """Free the resident model `name`."""
        await self._model_line(UnloadRequest(name), name)

    async def _model_line(self, line: LoadRequest | UnloadRequest, name: str) -> None:
        async with self._busy:
            if not self.alive or self.process is None or self.process.stdin is None:
                raise WorkerFailed(self.reason("the resident worker is not running"))
            self._awaiting_models = True
            try:
                await self.process.stdin.send(_encode(line) + b"\n")
                with anyio.fail_after(self.ready_timeout_s):
                    while True:
                        message = await self._inbox.receive()
                        if isinstance(message, Models):
                            return
                        if isinstance(message, LoadFailed) and message.model == name:
                            raise WorkerFailed(message.error)
                        if isinstance(message, LineError):
                            raise WorkerFailed(f"the worker refused the line: {message.error}")
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise WorkerFailed(self.reason(f"the worker exited with code {self.returncode}")) from None
            except TimeoutError:
                await self.stop()
                raise WorkerFailed(f"the worker did not load {name} within {self.ready_timeout_s:.0f}s") from None
            finally:
                self._awaiting_models = False

    def cancel_bound_s(self) -> float:
        """How long `cancel` waits for the worker to end the job before killing it."""
        return max(self.cancel_timeout_s, CANCEL_TIMEOUT_STEPS * self._step_time_s)

    async def cancel(self, job_id: str, on_event: Callable[[JobEvent], None] | None = None) -> bool:
        """Stop the running job `job_id`: send the worker a cancel line and read its answers up to the job's end
        (`cancelled`, or `done` / `failed` when the cancel came too late to matter). True when the worker ended the
        job itself within `cancel_bound_s()`, its model still loaded; otherwise the worker is stopped (the owner starts
        a new one) and the result is False. `generate` calls this when its caller is cancelled (the engine's cancel
        path), while it holds the job: call it only where nothing else reads the worker's answers. The images the job
        saves meanwhile (`saved` answers: a batch's finished images are kept) still go to `on_event`."""
        bound = self.cancel_bound_s()
        if self.alive and self.process is not None and self.process.stdin is not None:
            with anyio.move_on_after(bound):
                try:
                    await self.process.stdin.send(_encode(CancelRequest(job_id)) + b"\n")
                    while True:
                        message = await self._inbox.receive()
                        if isinstance(message, Saved) and message.job_id == job_id and on_event is not None:
                            on_event(message)
                        if isinstance(message, (Cancelled, Done, Failed, LineError)) and message.job_id == job_id:
                            log.info("sdcpp-worker ended job %s on a cancel (%s)", job_id, type(message).__name__)
                            return True
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass  # the worker died meanwhile: nothing left to stop
        log.warning("sdcpp-worker did not end job %s within %.1fs of a cancel: stopping it", job_id, bound)
        await self.stop()
        return False
