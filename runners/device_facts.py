"""The device facts sd.cpp's ggml prints when a backend starts: which GPUs it found, their VRAM, or why none.

ggml prints them once per process before the model loads, through sd.cpp's log (so with sd.cpp's `[LEVEL] file:line
- ` prefix; the Vulkan lines are DEBUG, printed only with `-v`):

    ggml_cuda_init: found 1 CUDA devices (Total VRAM: 143156 MiB):
      Device 0: NVIDIA H200, compute capability 9.0, VMM: no, VRAM: 143156 MiB
    ggml_cuda_init: failed to initialize CUDA: CUDA driver version is insufficient for CUDA runtime version
    ggml_vulkan: Found 1 Vulkan devices:
    ggml_vulkan: 0 = llvmpipe (LLVM 15.0.6, 256 bits) (llvmpipe) | uma: 1 | fp16: 1 | bf16: 0 | warp size: 8 | ...
    ggml_vulkan: No devices found.

sd.cpp names the backend it initialises (a DEBUG line; our worker prints it at INFO while loading):

    [DEBUG] ggml_extend.hpp:110  - Initializing backend: Vulkan0

and adds, once the weights are placed,

    [INFO ] stable-diffusion.cpp:859  - total params memory size = 20.31MB (VRAM 20.31MB, RAM 0.00MB): ...

`parse_device_log` turns such lines (any others are ignored) into a `DeviceFacts` for /health. One table, `_LINES`,
holds every pattern and what it records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec


class GpuDevice(msgspec.Struct, frozen=True, kw_only=True):
    backend: str  # "CUDA", "ROCm", "MUSA" or "Vulkan": the ggml backend that found it
    index: int  # the backend's own device number (what CUDA_VISIBLE_DEVICES / GGML_VK_VISIBLE_DEVICES select)
    name: str
    vram_mib: int | None = None  # CUDA/ROCm report it; ggml-vulkan does not print it
    compute_capability: str | None = None  # CUDA "9.0", ROCm "gfx1100"
    driver: str | None = None  # Vulkan's driver name, e.g. "llvmpipe" (Mesa's lavapipe, a CPU device)
    uma: bool | None = None  # Vulkan: memory shared with the host


class DeviceFacts(msgspec.Struct, frozen=True, kw_only=True):
    devices: tuple[GpuDevice, ...] = ()
    total_vram_mib: int | None = None  # ggml_cuda_init's total over its devices
    errors: tuple[str, ...] = ()  # why a backend found no device: "CUDA: CUDA driver version is insufficient ..."
    compute_backend: str | None = None  # the ggml backend sd.cpp runs on: "Vulkan0", "CUDA0", or "CPU" (a fallback)
    params_mib: float | None = None  # the loaded model's weights, as sd.cpp placed them
    params_vram_mib: float | None = None
    params_ram_mib: float | None = None

    @property
    def gpu_found(self) -> bool:
        return bool(self.devices)


@dataclass
class _Facts:
    """The parse's running state; frozen into DeviceFacts at the end."""

    devices: list[GpuDevice] = field(default_factory=list)
    cuda_backend: str = "CUDA"  # the name ggml_cuda_init used last (CUDA, ROCm or MUSA builds share the code)
    total_vram_mib: int | None = None
    errors: list[str] = field(default_factory=list)
    compute_backend: str | None = None
    params: tuple[float, float, float] | None = None

    def add(self, device: GpuDevice) -> None:
        self.devices = [
            known for known in self.devices if (known.backend, known.index) != (device.backend, device.index)
        ]
        self.devices.append(device)


def _mib(text: str | None) -> int | None:
    return int(text) if text is not None else None


def _cuda_found(facts: _Facts, match: re.Match[str]) -> None:
    facts.cuda_backend = match["backend"]
    facts.total_vram_mib = _mib(match["total"])


def _cuda_device(facts: _Facts, match: re.Match[str]) -> None:
    facts.add(
        GpuDevice(
            backend=facts.cuda_backend,
            index=int(match["index"]),
            name=match["name"],
            vram_mib=_mib(match["vram"]),
            compute_capability=f"{match['major']}.{match['minor']}",
        )
    )


def _rocm_device(facts: _Facts, match: re.Match[str]) -> None:
    facts.add(
        GpuDevice(
            backend="ROCm" if facts.cuda_backend == "CUDA" else facts.cuda_backend,
            index=int(match["index"]),
            name=match["name"],
            vram_mib=_mib(match["vram"]),
            compute_capability=match["arch"],
        )
    )


def _cuda_failed(facts: _Facts, match: re.Match[str]) -> None:
    facts.errors.append(f"{match['backend']}: {match['reason'].strip()}")


def _vulkan_device(facts: _Facts, match: re.Match[str]) -> None:
    facts.add(
        GpuDevice(
            backend="Vulkan",
            index=int(match["index"]),
            name=match["name"],
            driver=match["driver"],
            uma=match["uma"] == "1",
        )
    )


def _vulkan_none(facts: _Facts, match: re.Match[str]) -> None:
    facts.errors.append("Vulkan: no devices found")


def _vulkan_bad_index(facts: _Facts, match: re.Match[str]) -> None:
    facts.errors.append(f"Vulkan: {match['what']}")


def _compute_backend(facts: _Facts, match: re.Match[str]) -> None:
    facts.compute_backend = match["name"]


def _params(facts: _Facts, match: re.Match[str]) -> None:
    facts.params = (float(match["total"]), float(match["vram"]), float(match["ram"]))


# Pattern -> what it records. Patterns are searched anywhere in a line, so log prefixes do not matter (the CUDA/ROCm
# device lines start the line, or the message after sd.cpp's `[INFO ] file:line - ` prefix).
_LINES: tuple[tuple[re.Pattern[str], Callable[[_Facts, re.Match[str]], None]], ...] = (
    (
        re.compile(r"ggml_cuda_init: found \d+ (?P<backend>\w+) devices(?: \(Total VRAM: (?P<total>\d+) MiB\))?:"),
        _cuda_found,
    ),
    (
        re.compile(
            r"(?:^|\s-\s)\s*Device (?P<index>\d+): (?P<name>.+?), compute capability (?P<major>\d+)\.(?P<minor>\d+), "
            r"VMM: (?:yes|no)(?:, VRAM: (?P<vram>\d+) MiB)?"
        ),
        _cuda_device,
    ),
    (
        re.compile(
            r"(?:^|\s-\s)\s*Device (?P<index>\d+): (?P<name>.+?), (?P<arch>gfx\w+)(?:[:\w+-]*)? \(0x[0-9a-fA-F]+\), "
            r"VMM: (?:yes|no), Wave Size: \d+(?:, VRAM: (?P<vram>\d+) MiB)?"
        ),
        _rocm_device,
    ),
    (re.compile(r"ggml_cuda_init: failed to initialize (?P<backend>\w+): (?P<reason>.+)"), _cuda_failed),
    (
        re.compile(r"ggml_vulkan: (?P<index>\d+) = (?P<name>.+) \((?P<driver>[^()]*)\) \| uma: (?P<uma>[01]) \|"),
        _vulkan_device,
    ),
    (re.compile(r"ggml_vulkan: No devices found\."), _vulkan_none),
    (re.compile(r"ggml_vulkan: (?P<what>(?:Invalid device index|Device with index) .+)"), _vulkan_bad_index),
    (re.compile(r" - Initializing backend: (?P<name>\S+)"), _compute_backend),
    (
        re.compile(
            r"total params memory size = (?P<total>[\d.]+)MB \(VRAM (?P<vram>[\d.]+)MB, RAM (?P<ram>[\d.]+)MB\)"
        ),
        _params,
    ),
)


def mentions_device(line: str) -> bool:
    """Whether the line holds a device fact (what a resident process keeps of its log for /health)."""
    return any(pattern.search(line) for pattern, _ in _LINES)


def parse_device_log(lines: Iterable[str]) -> DeviceFacts:
    """The device facts in sd.cpp's log lines (stderr and stdout alike; lines without facts are skipped)."""
    facts = _Facts()
    for raw in lines:
        line = raw.rstrip("\r\n")
        for pattern, record in _LINES:
            match = pattern.search(line)
            if match is not None:
                record(facts, match)
                break
    total, vram, ram = facts.params if facts.params is not None else (None, None, None)
    return DeviceFacts(
        devices=tuple(facts.devices),
        total_vram_mib=facts.total_vram_mib,
        errors=tuple(facts.errors),
        compute_backend=facts.compute_backend,
        params_mib=total,
        params_vram_mib=vram,
        params_ram_mib=ram,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m runners.device_facts < log`: the facts of a captured log, as JSON."""
    import sys

    del argv
    print(msgspec.json.encode(parse_device_log(sys.stdin)).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
