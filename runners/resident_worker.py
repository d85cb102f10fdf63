"""Supervision of our resident worker (`sdcpp-worker`, built from runners/worker/): it loads a model once, then runs
one generation per JSON line on stdin and answers with JSON lines on stdout (progress, previews, done or failed),
tagged with the job id; the lines are runners/worker_protocol.py's structs. Its logs, in sd-cli's format, come on
stderr.

One job runs at a time. The library offers no way to stop a generation, so cancelling one ends the process; the
owner starts a new worker for the next job (the model loads again). A worker that prints nothing for
`stall_timeout_s` while a job runs is killed and the job fails saying so; a job line the worker refuses fails that
job; a line that is not a known message is logged and ignored.
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
    Done,
    Failed,
    Fatal,
    JobEvent,
    JobRequest,
    LineError,
    Message,
    Preview,
    Progress,
    Ready,
)

log = logging.getLogger("sdcpp_restapi.runners")
WORKER_BINARY = "sdcpp-worker"


class WorkerFailed(RuntimeError):
    """The worker could not start, died, stalled, or failed a job; the message says why."""


_decode = msgspec.json.Decoder(Message).decode
_encode = msgspec.json.Encoder().encode


class ResidentWorker(ResidentProcess):
    def __init__(self, argv: Sequence[str], ready_timeout_s: float = 600.0, stall_timeout_s: float = 300.0) -> None:
        super().__init__()
        self.argv = list(argv)
        self.ready_timeout_s = ready_timeout_s
        self.stall_timeout_s = stall_timeout_s
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
        elif isinstance(message, LineError):
            log.warning("sdcpp-worker refused a request line: %s", message.error)
            if self._busy.locked():  # our job's line was refused: the job fails instead of waiting for a stall
                self._messages.send_nowait(message)
        else:
            self._messages.send_nowait(message)

    def _on_stderr(self, text: str) -> None:
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
        """Run one job; returns the files written. A cancelled caller ends the worker (the library cannot stop a
        generation): the owner starts a new one for the next job."""
        async with self._busy:
            if not self.alive or self.process is None or self.process.stdin is None:
                raise WorkerFailed(self.reason("the resident worker is not running"))
            self.error_lines.clear()
            healthy = False  # whether the worker is known to be idle and well after this call
            try:
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
                    if isinstance(message, LineError):
                        healthy = True  # the line was refused; the worker goes on
                        raise WorkerFailed(f"the worker refused the job: {message.error}")
                    if isinstance(message, (Progress, Preview)):
                        on_event(message)
            finally:
                if not healthy:  # cancelled, stalled or dead: no half-run generation may remain
                    with anyio.CancelScope(shield=True):
                        await self.stop()
