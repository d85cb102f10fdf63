"""What both resident processes (sd-server, our worker) share: the process, its error lines, its exit, a log
listener (model loading progress), the device facts its log printed (runners/device_facts.py), and the reason a
failure is reported with."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio
from anyio.abc import Process

from runners.device_facts import DeviceFacts, mentions_device, parse_device_log
from runners.process import reap, stop_process
from runners.progress import Piece


class ResidentProcess:
    def __init__(self) -> None:
        self.process: Process | None = None
        self.error_lines: deque[str] = deque(maxlen=50)
        self.listener: Callable[[Piece], None] | None = None
        self.exited = anyio.Event()
        self.returncode: int | None = None
        self.env: dict[str, str] = {}  # added to the environment it starts with (device selection)
        self.device_lines: deque[str] = deque(maxlen=64)  # its log lines that state device facts

    def note_log_line(self, text: str) -> None:
        """Keep a log line (stdout or stderr) that states a device fact: the devices ggml found, the weights' VRAM."""
        if mentions_device(text):
            self.device_lines.append(text)

    def device_facts(self) -> DeviceFacts:
        """The devices and memory the process reported (empty facts before it printed any)."""
        return parse_device_log(self.device_lines)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and not self.exited.is_set()

    def reason(self, fallback: str) -> str:
        """The binary's own last error lines, else the fallback."""
        lines = list(dict.fromkeys(self.error_lines))
        return "; ".join(lines[-3:]) if lines else fallback

    async def _ended(self, process: Process) -> None:
        """The process is done with, however it went: stop what remains of it, record its exit, forget it."""
        with anyio.CancelScope(shield=True):
            await stop_process(process)
            self.returncode = process.returncode
            await reap(process)
            self.exited.set()
