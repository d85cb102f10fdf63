"""Check a built backend: its binaries link, `sd-cli --help` runs, and one tiny image comes out (on the device if there
is one, else on the CPU fallback). `just check-cuda` runs it after building the CUDA backend into its own data folder.

    python -m runners.backend_check cuda --models DIR   # DIR from `python -m fixtures.tiny_models DIR`

Prints one line per check and the device facts sd.cpp printed (`runners.devices`), then exits non-zero on any
failure. Extra environment for sd-cli (e.g. GGML_VK_VISIBLE_DEVICES=0 for lavapipe) is inherited.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from runners.backend_build import TARGETS
from runners.device_facts import parse_device_log
from runners.paths import backend_dir

TINY_SET = (
    ("--diffusion-model", "diffusion_models/flux2_tiny_dit.safetensors"),
    ("--llm", "llm/qwen3_tiny_llm.safetensors"),
    ("--taesd", "taesd/taef2_tiny.safetensors"),
)


def say(ok: bool, message: str) -> bool:
    print(f"[check-backend] {'ok  ' if ok else 'FAIL'} {message}", flush=True)
    return ok


def unresolved_libraries(binary: Path) -> list[str]:
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    return [line.strip() for line in result.stdout.splitlines() if "not found" in line]


def check(backend: str, models: Path, size: int, steps: int) -> bool:
    install = backend_dir(backend)
    results: list[bool] = []
    for target in TARGETS:
        binary = install / target
        if not binary.is_file():
            results.append(say(False, f"{binary} is missing: run bin/build-backend {backend}"))
            continue
        missing = unresolved_libraries(binary)
        results.append(
            say(
                not missing,
                f"{target} links ({binary.stat().st_size / 1e6:.0f} MB)" + "".join(f"; {m}" for m in missing),
            )
        )
    if not all(results):
        return False
    sd_cli = install / "sd-cli"
    usage = subprocess.run([str(sd_cli), "--help"], capture_output=True, text=True, check=False, timeout=120)
    results.append(
        say(usage.returncode == 0 and "--diffusion-model" in usage.stdout, f"sd-cli --help exits {usage.returncode}")
    )
    with tempfile.TemporaryDirectory(prefix="check-backend-") as scratch:
        image = Path(scratch) / "tiny.png"
        argv = [str(sd_cli)]
        for flag, relative in TINY_SET:
            argv += [flag, str(models / relative)]
        argv += ["-p", "a lovely cat", "-W", str(size), "-H", str(size), "--steps", str(steps), "-s", "42"]
        argv += ["-o", str(image), "-v"]  # -v: ggml's Vulkan device lines are DEBUG
        started = time.monotonic()
        run = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
        seconds = time.monotonic() - started
        made = image.is_file() and image.stat().st_size > 0
        results.append(
            say(
                run.returncode == 0 and made,
                f"sd-cli made a {size}x{size} image in {seconds:.2f} s (exit {run.returncode})",
            )
        )
        facts = parse_device_log([*run.stderr.splitlines(), *run.stdout.splitlines()])
        where = ", ".join(f"{d.backend}{d.index} {d.name}" for d in facts.devices) or "no GPU device: the CPU fallback"
        say(True, f"devices: {where}" + "".join(f"; {error}" for error in facts.errors))
        print(msgspec.json.encode(facts).decode(), flush=True)
        if run.returncode != 0 or not made:
            print(run.stdout[-3000:], run.stderr[-3000:], sep="\n", file=sys.stderr)
    return all(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="check-backend", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("backend")
    parser.add_argument(
        "--models", type=Path, required=True, help="a folder written by `python -m fixtures.tiny_models`"
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    return 0 if check(args.backend, args.models, args.size, args.steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
