"""The device facts parsed from what sd.cpp prints at start (runners/devices.py), on captured log lines."""

from __future__ import annotations

from pathlib import Path

import msgspec

from core.workers.pool import Worker, WorkerSpec
from runners.device_facts import DeviceFacts, GpuDevice, mentions_device, parse_device_log
from runners.resident_worker import ResidentWorker

# A CUDA build on a two-GPU box (ggml-cuda.cu's format), then the weights placed in VRAM.
CUDA_TWO_GPUS = """\
ggml_cuda_init: found 2 CUDA devices (Total VRAM: 48640 MiB):
  Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9, VMM: yes, VRAM: 24210 MiB
  Device 1: NVIDIA GeForce RTX 3090, compute capability 8.6, VMM: yes, VRAM: 24430 MiB
[INFO ] stable-diffusion.cpp:297  - Version: SD 1.x
[INFO ] stable-diffusion.cpp:859  - total params memory size = 2088.48MB (VRAM 2088.48MB, RAM 0.00MB): \
text_encoders 235.06MB(VRAM), diffusion_model 1639.41MB(VRAM), vae 94.72MB(VRAM), controlnet 0.00MB(VRAM), pmid 0.00MB(VRAM)
"""

# Our CUDA build (`just check-cuda 90`) on this machine, which has no NVIDIA driver: sd-cli goes on on the CPU.
CUDA_NO_DRIVER = """\
ggml_cuda_init: failed to initialize CUDA: CUDA driver version is insufficient for CUDA runtime version
[INFO ] stable-diffusion.cpp:859  - total params memory size = 14.39MB (VRAM 0.00MB, RAM 14.39MB): \
text_encoders 10.38MB(RAM), diffusion_model 2.00MB(RAM), vae 2.01MB(RAM), controlnet 0.00MB(RAM), pmid 0.00MB(RAM)
"""

# A ROCm build (the same ggml-cuda code, HIP's format).
ROCM_ONE_GPU = """\
ggml_cuda_init: found 1 ROCm devices (Total VRAM: 24560 MiB):
  Device 0: AMD Radeon RX 7900 XTX, gfx1100 (0x1100), VMM: no, Wave Size: 32, VRAM: 24560 MiB
"""

# Captured here: our Vulkan build's sd-cli -v on Mesa's lavapipe with GGML_VK_VISIBLE_DEVICES=0 (ggml's lines come
# through sd.cpp's log, at DEBUG level, so only with -v), and without that variable.
VULKAN_LAVAPIPE = """\
[DEBUG] ggml_extend.hpp:60   - ggml_vulkan: Found 1 Vulkan devices:
[DEBUG] ggml_extend.hpp:60   - ggml_vulkan: 0 = llvmpipe (LLVM 15.0.6, 256 bits) (llvmpipe) | uma: 0 | fp16: 1 | \
bf16: 0 | warp size: 8 | shared memory: 32768 | int dot: 0 | matrix cores: none
[DEBUG] ggml_extend.hpp:60   - ggml_vulkan: Warning: Device type is CPU. This is probably not the device you want.
[DEBUG] util.cpp:713  - Found 2 backend devices:
[DEBUG] util.cpp:716  - #0: Vulkan0
[DEBUG] ggml_extend.hpp:110  - Initializing backend: Vulkan0
[INFO ] stable-diffusion.cpp:858  - total params memory size = 14.39MB (VRAM 14.39MB, RAM 0.00MB): \
text_encoders 9.91MB(VRAM), diffusion_model 1.92MB(VRAM), vae 2.56MB(VRAM), controlnet 0.00MB(VRAM), pmid 0.00MB(VRAM)
"""
VULKAN_NONE = "[INFO ] ggml_extend.hpp:63   - ggml_vulkan: No devices found.\n"

# Captured here: our resident worker (sdcpp-worker) on lavapipe, its stderr while loading. It prints ggml-vulkan's
# device lines and the backend sd.cpp initialises at INFO (DEVICE_FACT_LINES in worker.cpp), among other lines.
WORKER_LAVAPIPE = """\
[INFO ] stable-diffusion.cpp:219  - loading diffusion model from '/models/diffusion_models/flux2_tiny_dit.safetensors'
[INFO ] ggml_extend.hpp:60   - ggml_vulkan: Found 1 Vulkan devices:
[INFO ] ggml_extend.hpp:60   - ggml_vulkan: 0 = llvmpipe (LLVM 15.0.6, 256 bits) (llvmpipe) | uma: 0 | fp16: 1 | \
bf16: 0 | warp size: 8 | shared memory: 32768 | int dot: 0 | matrix cores: none
[INFO ] ggml_extend.hpp:60   - ggml_vulkan: Warning: Device type is CPU. This is probably not the device you want.
[INFO ] ggml_extend.hpp:110  - Initializing backend: Vulkan0
  |==================================================| 196/196 - 23.12MB/s\x1b[K
[INFO ] stable-diffusion.cpp:858  - total params memory size = 16.95MB (VRAM 16.95MB, RAM 0.00MB): \
text_encoders 9.91MB(VRAM), diffusion_model 1.92MB(VRAM), vae 5.12MB(VRAM), controlnet 0.00MB(VRAM), pmid 0.00MB(VRAM)
"""

# Captured here: the CPU build's worker on the same models. The CPU backend lists no device; the weights are in RAM.
WORKER_CPU = """\
[INFO ] ggml_extend.hpp:110  - Initializing backend: CPU
[INFO ] model.cpp:993  - loading tensors completed, taking 0.47s (process: 0.00s, read: 0.03s, memcpy: 0.00s)
[INFO ] stable-diffusion.cpp:858  - total params memory size = 14.39MB (VRAM 0.00MB, RAM 14.39MB): \
text_encoders 9.91MB(RAM), diffusion_model 1.92MB(RAM), vae 2.56MB(RAM), controlnet 0.00MB(VRAM), pmid 0.00MB(RAM)
"""

# ggml-cuda's lines as they come through sd.cpp's log callback (with its prefix).
CUDA_THROUGH_SDCPP_LOG = """\
[INFO ] ggml_extend.hpp:63   - ggml_cuda_init: found 1 CUDA devices (Total VRAM: 143156 MiB):
[INFO ] ggml_extend.hpp:63   -   Device 0: NVIDIA H200, compute capability 9.0, VMM: no, VRAM: 143156 MiB
"""


def test_cuda_devices_with_vram_and_compute_capability() -> None:
    facts = parse_device_log(CUDA_TWO_GPUS.splitlines())
    assert facts.devices == (
        GpuDevice(backend="CUDA", index=0, name="NVIDIA GeForce RTX 4090", vram_mib=24210, compute_capability="8.9"),
        GpuDevice(backend="CUDA", index=1, name="NVIDIA GeForce RTX 3090", vram_mib=24430, compute_capability="8.6"),
    )
    assert facts.total_vram_mib == 48640
    assert facts.gpu_found
    assert (facts.params_mib, facts.params_vram_mib, facts.params_ram_mib) == (2088.48, 2088.48, 0.0)
    assert facts.errors == ()


def test_no_driver_is_an_error_and_the_weights_in_ram() -> None:
    facts = parse_device_log(CUDA_NO_DRIVER.splitlines())
    assert facts.devices == ()
    assert not facts.gpu_found
    assert facts.errors == ("CUDA: CUDA driver version is insufficient for CUDA runtime version",)
    assert facts.params_vram_mib == 0.0
    assert facts.params_ram_mib == 14.39


def test_rocm_devices_carry_their_gfx_architecture() -> None:
    (device,) = parse_device_log(ROCM_ONE_GPU.splitlines()).devices
    assert device == GpuDevice(
        backend="ROCm", index=0, name="AMD Radeon RX 7900 XTX", vram_mib=24560, compute_capability="gfx1100"
    )


def test_vulkan_device_names_keep_their_parentheses_and_the_driver() -> None:
    facts = parse_device_log(VULKAN_LAVAPIPE.splitlines())
    (device,) = facts.devices
    assert device == GpuDevice(
        backend="Vulkan", index=0, name="llvmpipe (LLVM 15.0.6, 256 bits)", driver="llvmpipe", uma=False
    )
    assert device.vram_mib is None
    assert (facts.params_vram_mib, facts.params_ram_mib) == (14.39, 0.0)


def test_vulkan_without_devices() -> None:
    facts = parse_device_log([VULKAN_NONE])
    assert facts.devices == ()
    assert facts.errors == ("Vulkan: no devices found",)


def test_lines_without_facts_give_empty_facts() -> None:
    assert parse_device_log(["[INFO ] stable-diffusion.cpp:297  - Version: SD 1.x", "", "\r"]) == DeviceFacts()


def test_a_device_printed_twice_counts_once() -> None:
    twice = CUDA_TWO_GPUS.splitlines()[:2] * 2
    assert len(parse_device_log(twice).devices) == 1


def test_facts_round_trip_as_json_for_health() -> None:
    facts = parse_device_log(CUDA_TWO_GPUS.splitlines())
    assert msgspec.json.decode(msgspec.json.encode(facts), type=DeviceFacts) == facts


def test_cuda_device_lines_after_the_sdcpp_log_prefix() -> None:
    facts = parse_device_log(CUDA_THROUGH_SDCPP_LOG.splitlines())
    assert facts.devices == (
        GpuDevice(backend="CUDA", index=0, name="NVIDIA H200", vram_mib=143156, compute_capability="9.0"),
    )


def test_the_backend_sdcpp_initialises_is_a_fact() -> None:
    assert parse_device_log(VULKAN_LAVAPIPE.splitlines()).compute_backend == "Vulkan0"
    assert parse_device_log(WORKER_CPU.splitlines()).compute_backend == "CPU"


def test_only_lines_with_facts_are_kept() -> None:
    kept = [line for line in WORKER_LAVAPIPE.splitlines() if mentions_device(line)]
    assert [line.split(" - ", 1)[1][:24] for line in kept] == [
        "ggml_vulkan: 0 = llvmpip",
        "Initializing backend: Vu",
        "total params memory size",
    ]
    assert not mentions_device("[INFO ] stable-diffusion.cpp:219  - loading diffusion model from 'Device 0: x'")


def worker_with_log(backend: str, log: str) -> Worker:
    """A pool worker whose resident worker printed `log` on stderr (the process itself is not started)."""
    worker = Worker(WorkerSpec(f"{backend}0", backend, Path("/nonexistent/sd-server")))
    resident = ResidentWorker(["/nonexistent/sdcpp-worker"])
    for line in log.splitlines():
        resident._on_stderr(line)
    worker.resident, worker.models = resident, {"flux2_tiny_dit": 17}
    return worker


def test_health_shows_what_the_lavapipe_worker_printed() -> None:
    info = msgspec.json.decode(msgspec.json.encode(worker_with_log("vulkan", WORKER_LAVAPIPE).info()))
    facts = info["device_facts"]
    assert [(device["backend"], device["name"], device["driver"]) for device in facts["devices"]] == [
        ("Vulkan", "llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe")
    ]
    assert facts["compute_backend"] == "Vulkan0"
    assert (facts["params_vram_mib"], facts["params_ram_mib"]) == (16.95, 0.0)
    assert facts["errors"] == []


def test_health_shows_the_cpu_workers_weights_in_ram() -> None:
    facts = worker_with_log("cpu", WORKER_CPU).info().device_facts
    assert facts is not None
    assert (facts.devices, facts.compute_backend, facts.params_ram_mib, facts.params_vram_mib) == (
        (),
        "CPU",
        14.39,
        0.0,
    )


def test_a_worker_without_a_process_has_no_facts() -> None:
    worker = Worker(WorkerSpec("cpu0", "cpu", Path("/nonexistent/sd-server")))
    assert worker.info().device_facts is None
