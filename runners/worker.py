"""Our resident worker (`sdcpp-worker`, built from runners/worker/): loads a model once, then runs one
generation per JSON line on stdin and answers with JSON lines on stdout (progress, previews, done or failed),
tagged with the job id. Its logs, in sd-cli's format, come on stderr.

One job runs at a time. The library offers no way to stop a generation, so cancelling one ends the process; the
owner starts a new worker for the next job (the model loads again). A worker that prints nothing for
`stall_timeout_s` while a job runs is killed and the job fails saying so; a job line the worker refuses fails that
job; a line that is not a known message is logged and ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal, get_args

import anyio
import msgspec
from anyio.abc import Process, TaskStatus
from msgspec import Meta

from runners.process import pump_lines, spawn, stop_process
from runners.progress import LogLine, classify
from runners.resident import ResidentProcess

log = logging.getLogger("sdcpp_restapi.runners")
WORKER_BINARY = "sdcpp-worker"


class WorkerFailed(RuntimeError):
    """The worker could not start, died, stalled, or failed a job; the message says why."""


# ----------------------------------------------------------------------------------------------- protocol
# These structs are the protocol's one definition: the header comment of worker.cpp is made from them
# (`python -m runners.worker`), and tests/unit/test_worker_protocol.py fails when the two differ.

NotEmpty = Annotated[str, Meta(min_length=1)]


class PreviewRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Write the running job's preview to `path` at each step (written whole, then renamed into place)."""

    mode: Literal["proj", "tae", "vae"]
    path: NotEmpty
    noisy: Annotated[bool, Meta(description="preview the noisy latent instead of the denoised one")] = False


class JobRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """One generation. A line that is not one (not JSON, not an object, a field missing, of the wrong type or
    unknown) is refused with an `error` answer: nothing is filled in with a default."""

    job_id: NotEmpty
    mode: Literal["img_gen", "vid_gen"]
    args: Annotated[list[str], Meta(description="generation flags as sd-cli spells them")]
    output: Annotated[str, Meta(min_length=1, description='"<folder>/image_%d.png" or "<folder>/video.webm"')]
    preview: PreviewRequest | None = None


class Ready(msgspec.Struct, tag="ready", tag_field="type"):
    """The model is loaded; job lines are read from now on."""


class Fatal(msgspec.Struct, tag="fatal", tag_field="type"):
    """The model could not be loaded; the worker exits (code 1, or 2 for invalid model arguments)."""

    error: str


class Progress(msgspec.Struct, tag="progress", tag_field="type"):
    """A sampling step of the job finished."""

    job_id: str
    step: int
    steps: int
    time: Annotated[float, Meta(description="seconds the step took")]


class Preview(msgspec.Struct, tag="preview", tag_field="type"):
    """A preview of the job was written to `path`."""

    job_id: str
    step: int
    frames: int
    path: str
    is_noisy: bool


class Done(msgspec.Struct, tag="done", tag_field="type"):
    """The job finished; `outputs` are the files written."""

    job_id: str
    outputs: list[str]


class Failed(msgspec.Struct, tag="failed", tag_field="type"):
    """The job failed (bad arguments, an input that cannot be read, an exception); the model stays loaded."""

    job_id: str
    error: str


class LineError(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    """A line was refused (see JobRequest); the worker reads the next one."""

    error: Annotated[str, Meta(description="the field and the rule it broke")]
    job_id: Annotated[str | None, Meta(description="when the line had a string job_id")] = None


Message = Ready | Fatal | Progress | Preview | Done | Failed | LineError
JobEvent = Progress | Preview
_decode = msgspec.json.Decoder(Message).decode
_encode = msgspec.json.Encoder().encode

WORKER_SOURCE = Path(__file__).resolve().parent / "worker" / "worker.cpp"
PROTOCOL_BEGIN = "// BEGIN PROTOCOL"
PROTOCOL_END = "// END PROTOCOL"


def _type_text(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.Metadata):
        return _type_text(info.type)
    if isinstance(info, msgspec.inspect.StrType):
        return "string (not empty)" if info.min_length else "string"
    if isinstance(info, msgspec.inspect.BoolType):
        return "true | false"
    if isinstance(info, msgspec.inspect.IntType):
        return "integer"
    if isinstance(info, msgspec.inspect.FloatType):
        return "number"
    if isinstance(info, msgspec.inspect.NoneType):
        return "null"
    if isinstance(info, msgspec.inspect.LiteralType):
        return " | ".join(json.dumps(value) for value in info.values)
    if isinstance(info, msgspec.inspect.ListType):
        return f"[{_type_text(info.item_type)}, ...]"
    if isinstance(info, msgspec.inspect.StructType):
        return info.cls.__name__
    if isinstance(info, msgspec.inspect.UnionType):
        return " | ".join(_type_text(member) for member in info.types)
    raise TypeError(f"the protocol text has no words for {info!r}")


def _struct_text(struct: type[msgspec.Struct]) -> list[str]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = [f'"{info.tag_field}": {json.dumps(info.tag)}'] if info.tag_field else []
    notes = []
    for field in info.fields:
        default = "" if field.required else f" (default {json.dumps(msgspec.to_builtins(field.default))})"
        fields.append(f'"{field.encode_name}"{"" if field.required else "?"}: {_type_text(field.type)}{default}')
        if isinstance(field.type, msgspec.inspect.Metadata) and field.type.extra_json_schema:
            notes.append(f"{field.encode_name}: {field.type.extra_json_schema['description']}")
    head = f"{struct.__name__} {{{', '.join(fields)}}}"
    about = " ".join((struct.__doc__ or "").split())
    text = [head, *(f"  {line}" for line in textwrap.wrap(about, 112)), *(f"  - {note}" for note in notes)]
    return [wrapped for line in text for wrapped in textwrap.wrap(line, 117, subsequent_indent="      ")]


def protocol_comment() -> str:
    """The protocol block of worker.cpp's header comment, made from the structs above."""
    lines = [
        "BEGIN PROTOCOL (made from runners/worker.py by `python -m runners.worker`; a unit test checks it)",
        "A job is one JSON object on one line of stdin (`?` marks a field that may be left out):",
        *_struct_text(JobRequest),
        *_struct_text(PreviewRequest),
        "Answers are JSON objects, one per line on stdout, told apart by their type:",
        *(line for message in get_args(Message) for line in _struct_text(message)),
        "END PROTOCOL",
    ]
    return "\n".join(f"// {line}" for line in lines)


def committed_protocol_comment(source: str) -> str:
    start, end = source.index(PROTOCOL_BEGIN), source.index(PROTOCOL_END)
    return source[start : source.index("\n", end) if "\n" in source[end:] else len(source)]


# -------------------------------------------------------------------------------------------- supervision


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
        process = await spawn(self.argv, stdin=True)
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


if __name__ == "__main__":
    cpp = WORKER_SOURCE.read_text()
    WORKER_SOURCE.write_text(cpp.replace(committed_protocol_comment(cpp), protocol_comment()))
