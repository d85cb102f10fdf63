"""A resident sd-server: started once per loaded model on a private loopback port, kept for the jobs
that follow, so the weights are loaded once (sd-server loads one model at start and cannot switch).

The process's stdout is pumped for its whole life; while a job runs, the pieces go to that job's
listener (sd-server prints the same progress bars as sd-cli, without job ids: one job runs at a time).
"""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import httpx
import msgspec
from anyio.abc import Process, TaskStatus

from runners.process import pump_lines, spawn, stop_process
from runners.progress import LogLine, Piece, classify
from runners.resident import ResidentProcess

log = logging.getLogger("sdcpp_restapi.runners")
T = TypeVar("T")

READY_POLL_S = 0.05
IDLE_POLL_S = 0.25
FINISHING_POLL_S = 0.005
# Log messages after which the result is about to be ready: poll fast from then on.
FINISHING = ("generate_image completed", "generate_video completed", "generate failed")


ServerBody = dict[str, object]  # sd-server's native img_gen / vid_gen request (built by runners.options)


class ServerImage(msgspec.Struct):
    index: int
    b64_json: str


class ServerResult(msgspec.Struct):
    """What a completed sd-server job holds: images (img_gen) or one encoded video (vid_gen)."""

    images: list[ServerImage] = []
    b64_json: str | None = None


class _ServerError(msgspec.Struct):
    message: str | None = None


class _ServerJob(msgspec.Struct):
    status: str
    result: ServerResult | None = None
    error: _ServerError | None = None


class _Submitted(msgspec.Struct):
    poll_url: str


class ServerFailed(RuntimeError):
    """The server could not start, died, or failed a job; the message is the binary's own reason."""


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ResidentServer(ResidentProcess):
    def __init__(self, argv_without_listen: Sequence[str], ready_timeout_s: float = 600.0) -> None:
        super().__init__()
        self.port = free_loopback_port()
        self.argv = [*argv_without_listen, "--listen-ip", "127.0.0.1", "--listen-port", str(self.port)]
        self.ready_timeout_s = ready_timeout_s
        self.ready = False
        self._finishing = anyio.Event()
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=httpx.Timeout(30.0))

    # ------------------------------------------------------------------------------------ life cycle

    def _on_text(self, text: str) -> None:
        self.note_log_line(text)
        piece = classify(text)
        if isinstance(piece, LogLine):
            if piece.level == "ERROR":
                self.error_lines.append(piece.message.strip())
                log.warning("sd-server: %s", piece.message.strip())
            if any(marker in piece.message for marker in FINISHING):
                self._finishing.set()
        if self.listener is not None:
            self.listener(piece)

    def _on_stderr(self, text: str) -> None:
        piece = classify(text)
        if not isinstance(piece, LogLine):
            self.error_lines.append(text.strip())
        self._on_text(text)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start, signal `started` once the HTTP API answers, then live until the process exits.
        Raises ServerFailed (before `started`) if the process exits or never answers."""
        process = await spawn(self.argv, env=self.env)
        self.process = process
        timed_out = False
        try:
            async with anyio.create_task_group() as pumps:
                pumps.start_soon(self._pump_then_mark_exit, process)
                pumps.start_soon(pump_lines, process.stderr, self._on_stderr)
                if await self._wait_ready():
                    task_status.started()
                elif not self.exited.is_set():
                    timed_out = True
                    pumps.cancel_scope.cancel()
                # else: it exited; the pumps end at EOF, with every stderr line read
            self.returncode = await process.wait()
        finally:
            await self._ended(process)
            with anyio.CancelScope(shield=True):
                await self.client.aclose()
        if timed_out:
            raise ServerFailed(f"sd-server did not answer within {self.ready_timeout_s:.0f}s")
        if not self.ready:
            # sd-server exits 0 when it cannot bind its port, after loading the model.
            raise ServerFailed(self.reason(f"sd-server exited with code {self.returncode} before answering"))

    async def _pump_then_mark_exit(self, process: Process) -> None:
        await pump_lines(process.stdout, self._on_text)
        self.returncode = await process.wait()
        self.exited.set()

    async def _wait_ready(self) -> bool:
        """True once the HTTP API answers; False if the process exits first or the timeout passes."""
        with anyio.move_on_after(self.ready_timeout_s):
            while not self.exited.is_set():
                try:
                    response = await self.client.get("/sdcpp/v1/capabilities", timeout=2.0)
                    if response.status_code == 200:
                        self.ready = True
                        return True
                except httpx.HTTPError:
                    pass
                with anyio.move_on_after(READY_POLL_S):
                    await self.exited.wait()
        return False

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process)
            await self.exited.wait()

    # ------------------------------------------------------------------------------------------ jobs

    async def generate(self, kind: str, body: ServerBody, listener: Callable[[Piece], None]) -> ServerResult:
        """Submit to /sdcpp/v1/{kind} and wait for the result object (images or video as base64)."""
        if not self.alive:
            raise ServerFailed(self.reason("the resident sd-server is not running"))
        self.error_lines.clear()
        self._finishing = anyio.Event()
        self.listener = listener
        try:
            submitted = await self._request("POST", f"/sdcpp/v1/{kind}", json=body)
            if submitted.status_code != 202:
                raise ServerFailed(f"sd-server refused the job: {_error_text(submitted)}")
            poll_url = _decode(submitted, _Submitted).poll_url
            while True:
                with anyio.move_on_after(IDLE_POLL_S):
                    await self._finishing.wait()
                if self.exited.is_set():
                    raise ServerFailed(self.reason(f"sd-server exited with code {self.returncode} during the job"))
                job = _decode(await self._request("GET", poll_url), _ServerJob)
                if job.status == "completed":
                    return job.result or ServerResult()
                if job.status in ("failed", "cancelled"):
                    message = job.error.message if job.error else None
                    raise ServerFailed(self.reason(message or job.status))
                if self._finishing.is_set():
                    await anyio.sleep(FINISHING_POLL_S)
        finally:
            self.listener = None

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerFailed(self.reason(f"sd-server did not answer: {exc}")) from None


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:300]


def _decode(response: httpx.Response, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ServerFailed(f"sd-server answered something unexpected: {exc}") from None


def decode_images(result: ServerResult) -> list[bytes]:
    """Encoded image files (with sd.cpp's embedded metadata) in batch order."""
    return [base64.b64decode(image.b64_json) for image in sorted(result.images, key=lambda i: i.index)]
