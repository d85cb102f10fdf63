"""Live previews: settings (persisted), and a watcher that turns sd-cli's preview file into events.

sd-cli rewrites its preview file in place, non-atomically, on every denoiser call, and ignores its own
--preview-interval. The watcher polls the file's (mtime, size), decodes it off the event loop (a
half-written file fails to decode and is simply retried on the next change or tick), and publishes at most
one preview per `interval` sampling steps, resized to fit `max_size`, as a JPEG data URL.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Annotated, Literal

import anyio
import msgspec
from msgspec import Meta
from PIL import Image

from core.events.bus import EventBus
from core.events.types import JobPreview
from core.stored_values import ValueStore

PreviewMode = Literal["none", "proj", "tae", "vae"]
POLL_S = 0.03
SETTINGS_KEY = "preview_settings"


class PreviewSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    mode: PreviewMode = "tae"
    interval: Annotated[int, Meta(ge=1, le=100)] = 1
    max_size: Annotated[int, Meta(ge=64, le=1024)] = 256
    quality: Annotated[int, Meta(ge=1, le=100)] = 75
    # Preview the noisy latents rather than the denoised estimate (the contract's `is_noisy`; resident worker only).
    preview_noisy: bool = False

    @property
    def active(self) -> bool:
        return self.enabled and self.mode != "none"


class PreviewSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """PUT body: any subset of the settings."""

    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    mode: PreviewMode | msgspec.UnsetType = msgspec.UNSET
    interval: Annotated[int, Meta(ge=1, le=100)] | msgspec.UnsetType = msgspec.UNSET
    max_size: Annotated[int, Meta(ge=64, le=1024)] | msgspec.UnsetType = msgspec.UNSET
    quality: Annotated[int, Meta(ge=1, le=100)] | msgspec.UnsetType = msgspec.UNSET
    preview_noisy: bool | msgspec.UnsetType = msgspec.UNSET


class PreviewSettingsUpdated(msgspec.Struct):
    success: bool
    settings: PreviewSettings


class PreviewStore:
    """The settings (persisted in the store) and the latest preview of each running job."""

    def __init__(self, store: ValueStore) -> None:
        self.store = store
        self.settings = PreviewSettings()
        self.latest: dict[str, bytes] = {}  # job_id -> JPEG

    async def restore(self) -> None:
        self.settings = await self.store.value(SETTINGS_KEY, PreviewSettings) or self.settings

    async def update(self, update: PreviewSettingsUpdate) -> PreviewSettings:
        changes = {k: v for k, v in msgspec.structs.asdict(update).items() if v is not msgspec.UNSET}
        self.settings = msgspec.structs.replace(self.settings, **changes)
        await self.store.set_value(SETTINGS_KEY, self.settings)
        return self.settings


class RenderedPreview(msgspec.Struct):
    jpeg: bytes
    width: int
    height: int
    frame_count: int


def render(data: bytes, max_size: int, quality: int) -> RenderedPreview | None:
    """Decode a preview file (image or animated WebP) into a bounded JPEG; None if it is incomplete."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                image.seek(frames - 1)  # the newest frame of a video preview
            image.load()
            frame = image.convert("RGB")
    except Exception:  # truncated or half-written: the next write will be whole
        return None
    frame.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=quality)
    return RenderedPreview(buffer.getvalue(), frame.width, frame.height, frames)


class PreviewWatcher:
    """Watches one job's preview file while its process runs."""

    def __init__(
        self,
        job_id: str,
        path: Path,
        settings: PreviewSettings,
        store: PreviewStore,
        bus: EventBus,
        note: str | None = None,
    ) -> None:
        self.job_id, self.path, self.settings, self.store, self.bus = job_id, path, settings, store, bus
        self.note = note  # e.g. why the mode fell back to proj
        self.step = 0  # the job's latest sampling step, fed by the progress tracker
        self.total = 0
        self.published_step: int | None = None
        self.published = 0

    def on_step(self, step: int, total: int) -> None:
        self.step, self.total = step, total

    def _due(self) -> bool:
        if self.published_step is None or self.step < self.published_step:  # first, or the next batch image
            return True
        return self.step - self.published_step >= self.settings.interval or self.step == self.total

    async def run(self) -> None:
        """Poll until cancelled (the caller cancels it when the process ends)."""
        seen: tuple[int, int] | None = None
        while True:
            await anyio.sleep(POLL_S)
            try:
                stat = await anyio.Path(self.path).stat()
            except OSError:
                continue
            signature = (stat.st_mtime_ns, stat.st_size)
            if signature == seen or stat.st_size == 0 or not self._due():
                continue
            if await self.publish(await anyio.Path(self.path).read_bytes()):
                seen = signature
            # else half-written: retry on the next change or tick

    async def offer(self, path: Path, step: int, total: int, is_noisy: bool = False) -> None:
        """A preview file written whole (the resident worker's): published if the interval says it is due."""
        self.on_step(step, total)
        if self._due():
            await self.publish(await anyio.Path(path).read_bytes(), is_noisy)

    async def publish(self, data: bytes, is_noisy: bool = False) -> bool:
        """Render a preview file as a bounded JPEG and publish it; False if it does not decode (yet)."""
        rendered = await anyio.to_thread.run_sync(render, data, self.settings.max_size, self.settings.quality)
        if rendered is None:
            return False
        self.published_step = self.step
        self.published += 1
        self.store.latest[self.job_id] = rendered.jpeg
        data_url = "data:image/jpeg;base64," + base64.b64encode(rendered.jpeg).decode("ascii")
        self.bus.publish(
            JobPreview(
                self.job_id,
                self.step,
                rendered.frame_count,
                rendered.width,
                rendered.height,
                is_noisy=is_noisy,
                image=data_url,
                mode=self.settings.mode,
                note=self.note,
            )
        )
        return True
