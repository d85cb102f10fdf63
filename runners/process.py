"""Run one sd.cpp binary as a supervised subprocess (argv list, no shell, own process group).

stdout and stderr are read concurrently as they arrive and fed to a callback piece by piece; on
cancellation the whole process group gets SIGTERM, then SIGKILL after a grace period, so no orphan
survives a cancelled job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import anyio
import msgspec
from anyio.abc import ByteReceiveStream, Process

from runners.progress import LogLine, Piece, StreamSplitter, classify

TERMINATE_GRACE_S = 3.0
TAIL_LINES = 40


class RunResult(msgspec.Struct):
    returncode: int
    error_lines: list[str]  # [ERROR] messages and unprefixed stderr text (aborts, asserts), in order
    stdout_tail: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure_reason(self, program: str) -> str:
        """The binary's own words for why it failed, for a job's `error` or `last_error`."""
        if self.returncode < 0:
            try:
                status = f"was killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                status = f"was killed by signal {-self.returncode}"
        else:  # exit 0 with [ERROR] lines: upscale mode reports failures that way
            status = f"exited with code {self.returncode}" if self.returncode else "reported an error"
        reasons = list(dict.fromkeys(self.error_lines))  # de-duplicated, order kept
        detail = "; ".join(reasons[-3:]) if reasons else (self.stdout_tail[-1] if self.stdout_tail else "no output")
        return f"{program} {status}: {detail}"[:1000]


def _kill_group(process: Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


async def pump_lines(stream: ByteReceiveStream | None, on_text: Callable[[str], None]) -> None:
    if stream is None:
        return
    splitter = StreamSplitter()
    async for chunk in stream:
        for text in splitter.feed(chunk):
            on_text(text)
    for text in splitter.flush():
        on_text(text)


async def run_binary(
    argv: Sequence[str],
    on_piece: Callable[[Piece], None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run to completion (or cancellation) and return its exit status and error lines."""
    error_lines: list[str] = []
    stdout_tail: deque[str] = deque(maxlen=TAIL_LINES)

    def on_stdout(text: str) -> None:
        stdout_tail.append(text)
        piece = classify(text)
        if isinstance(piece, LogLine) and piece.level == "ERROR":
            error_lines.append(piece.message)
        if on_piece is not None:
            on_piece(piece)

    def on_stderr(text: str) -> None:
        piece = classify(text)
        if isinstance(piece, LogLine):
            if piece.level == "ERROR":
                error_lines.append(piece.message.strip())
        else:
            error_lines.append(text.strip())
        if on_piece is not None:
            on_piece(piece)

    process = await spawn(argv, cwd)
    try:
        async with anyio.create_task_group() as pumps:
            pumps.start_soon(pump_lines, process.stdout, on_stdout)
            pumps.start_soon(pump_lines, process.stderr, on_stderr)
        returncode = await process.wait()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stop_process(process)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await reap(process)
    return RunResult(returncode, error_lines, list(stdout_tail))


class ChildBook(Protocol):
    """Where the registry records children durably (the service's store); blocking calls."""

    def record_child(self, pid: int, exe: str) -> None: ...

    def forget_child(self, pid: int) -> None: ...

    def recorded_children(self) -> dict[int, str]: ...

    def forget_all_children(self) -> None: ...


class ChildRegistry:
    """The sd.cpp processes this service started. Children run in their own session (so a cancel can kill the
    whole group), which also means they outlive a SIGKILLed service: on the next start `reap_stale` kills the
    ones still running. Recording is a hint for that clean-up; without a book nothing is recorded."""

    def __init__(self) -> None:
        self.book: ChildBook | None = None

    def configure(self, book: ChildBook | None) -> None:
        self.book = book

    def add(self, pid: int, exe: str) -> None:
        if self.book is not None:
            self.book.record_child(pid, exe)

    def remove(self, pid: int) -> None:
        if self.book is not None:
            self.book.forget_child(pid)

    def reap_stale(self) -> list[int]:
        """Kill recorded processes that still run the recorded binary; returns their pids. Blocking."""
        if self.book is None:
            return []
        killed = []
        for pid, exe in self.book.recorded_children().items():
            try:
                running = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if Path(running).resolve() == Path(exe).resolve():
                try:
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        self.book.forget_all_children()
        return killed


CHILDREN = ChildRegistry()


async def spawn(
    argv: Sequence[str],
    cwd: str | os.PathLike[str] | None = None,
    stdin: bool = False,
    env: Mapping[str, str] | None = None,
) -> Process:
    """Start a binary in its own session with piped output (and input, for a resident worker), recorded in
    CHILDREN until it exits; `env` adds variables to ours (a worker's device selection)."""
    process = await anyio.open_process(
        list(argv),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        start_new_session=True,
    )
    await anyio.to_thread.run_sync(CHILDREN.add, process.pid, str(Path(argv[0]).resolve()))
    return process


async def stop_process(process: Process, grace_s: float = TERMINATE_GRACE_S) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within `grace_s`."""
    if process.returncode is not None:
        return
    _kill_group(process, signal.SIGTERM)
    with anyio.move_on_after(grace_s):
        await process.wait()
        return
    _kill_group(process, signal.SIGKILL)
    await process.wait()


async def reap(process: Process) -> None:
    """Close the process's pipes once it has exited and forget it."""
    await process.aclose()
    await anyio.to_thread.run_sync(CHILDREN.remove, process.pid)


def resident_memory_mib(pid: int | None) -> int | None:
    """The process's resident set size in MiB (Linux /proc), None where it cannot be read."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
