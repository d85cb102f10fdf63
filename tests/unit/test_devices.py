"""The device facts parsed from what sd.cpp prints at start (runners/devices.py), on captured log lines."""

from __future__ import annotations

import msgspec

from runners.device_facts import DeviceFacts, GpuDevice, parse_device_log

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
