"""Which device a resident process runs on: each backend's own selection mechanism, declared once here.

A worker's `device` ("0", "1", "0,1") is handed to the variable its backend reads; the process sees only those
devices. CPU workers have no device to choose: they take a thread count (sd.cpp's --threads) instead. A backend
name that is not in the table but starts with one of its names (`cuda-12`, `vulkan_lavapipe`) uses that entry.
"""

from __future__ import annotations

# backend name -> the environment variable its sd.cpp build reads to choose devices (None: one device, or the CPU)
DEVICE_VARIABLES: dict[str, str | None] = {
    "cpu": None,
    "metal": None,
    "cuda": "CUDA_VISIBLE_DEVICES",
    "rocm": "HIP_VISIBLE_DEVICES",
    "hip": "HIP_VISIBLE_DEVICES",
    "vulkan": "GGML_VK_VISIBLE_DEVICES",
    "sycl": "ONEAPI_DEVICE_SELECTOR",
    "opencl": "GGML_OPENCL_PLATFORM",
}


class NoDeviceSelection(ValueError):
    """A device was named for a backend that has no way to choose one."""


def device_variable(backend: str) -> str | None:
    if backend in DEVICE_VARIABLES:
        return DEVICE_VARIABLES[backend]
    prefixed = [name for name in DEVICE_VARIABLES if backend.startswith(name)]
    return DEVICE_VARIABLES[max(prefixed, key=len)] if prefixed else None


def device_environment(backend: str, device: str) -> dict[str, str]:
    """The environment that puts a process of `backend` on `device` ("" : the backend's default, nothing set)."""
    if not device:
        return {}
    variable = device_variable(backend)
    if variable is None:
        raise NoDeviceSelection(
            f"backend {backend!r} has no device selection (known: "
            f"{', '.join(name for name, var in DEVICE_VARIABLES.items() if var)}); leave device empty"
        )
    return {variable: device}
