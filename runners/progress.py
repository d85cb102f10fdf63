"""Parse sd.cpp's stdout: `[LEVEL] file:line - msg` log lines and `\\r`-drawn progress bars.

The byte stream is split on both `\\r` and `\\n` (bars redraw with `\\r` and only the last step ends with
`\\n`), ANSI codes are stripped, and each piece is classified. A phase tracker turns bars into sampling
progress: only bars that follow `generating image: i/N` and count iterations are sampling steps (tensor
loading bars count MB/s, VAE and ESRGAN tile bars follow their own log lines).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

import msgspec

ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
_SEPARATORS = re.compile(rb"\r|\n|\x1b\[K")
LOG_LINE = re.compile(r"^\[(?P<level>DEBUG|INFO |WARN |ERROR)\] (?P<file>[^:\s]+):(?P<line>\d+)\s* - (?P<msg>.*)$")
BAR = re.compile(
    r"^  \|(?P<bar>[=> ]{50})\| (?P<step>\d+)/(?P<total>\d+) - (?P<rate>[0-9.]+|inf|nan)(?P<unit>s/it|it/s|MB/s|GB/s)$"
)
GENERATING_IMAGE = re.compile(r"generating image: (?P<index>\d+)/(?P<count>\d+) - seed (?P<seed>-?\d+)")
# Log messages that end the sampling phase (the next bars are VAE or ESRGAN tiles, not steps).
NON_SAMPLING = re.compile(r"sampling completed|decoding \d+ latents|IMG2IMG|upscaling from|hires fix:|generate_video")
GENERATING_VIDEO = re.compile(r"generate_video (?P<w>\d+)x(?P<h>\d+)x(?P<frames>\d+)")
SAMPLING_VIDEO = re.compile(r"sampling using|sample_method|get_learned_condition completed")

Phase = Literal["load", "sample", "other"]


class LogLine(msgspec.Struct, frozen=True):
    level: str  # DEBUG, INFO, WARN, ERROR
    source: str  # "file.cpp:123"
    message: str


class Bar(msgspec.Struct, frozen=True):
    step: int
    total: int
    unit: str


class SamplingStep(msgspec.Struct, frozen=True):
    """One step of the sampling bar for image `image_index` (0-based) of the batch."""

    image_index: int
    step: int
    total: int


class Other(msgspec.Struct, frozen=True):
    text: str


Piece = LogLine | Bar | Other


def classify(text: str) -> Piece:
    if match := LOG_LINE.match(text):
        return LogLine(match["level"].strip(), f"{match['file']}:{match['line']}", match["msg"])
    if match := BAR.match(text):
        return Bar(int(match["step"]), int(match["total"]), match["unit"])
    return Other(text)


class StreamSplitter:
    """Feeds raw bytes, yields complete pieces (text between `\\r`/`\\n` separators)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> Iterator[str]:
        data = self._pending + chunk
        # A bar is "\r<bar>\x1b[K": its erase-line code ends it, so it is handled now, not when the next
        # bar's "\r" arrives one step later.
        pieces = _SEPARATORS.split(data)
        self._pending = pieces.pop()
        for raw in pieces:
            text = ANSI.sub(b"", raw).decode("utf-8", "replace")
            if text.strip():
                yield text

    def flush(self) -> Iterator[str]:
        rest, self._pending = self._pending, b""
        text = ANSI.sub(b"", rest).decode("utf-8", "replace")
        if text.strip():
            yield text


class ProgressTracker:
    """Turns the classified stdout pieces of one run into sampling steps."""

    def __init__(self) -> None:
        self.phase: Phase = "other"
        self.image_index = 0

    def observe(self, piece: Piece) -> SamplingStep | None:
        if isinstance(piece, LogLine):
            if match := GENERATING_IMAGE.search(piece.message):
                self.phase, self.image_index = "sample", int(match["index"]) - 1
            elif GENERATING_VIDEO.search(piece.message):
                # Video runs have no per-image line: the next iteration bars are the sampling steps.
                self.phase, self.image_index = "sample", 0
            elif NON_SAMPLING.search(piece.message):
                self.phase = "other"
            return None
        if isinstance(piece, Bar) and self.phase == "sample" and piece.unit in ("it/s", "s/it"):
            return SamplingStep(self.image_index, piece.step, piece.total)
        return None
