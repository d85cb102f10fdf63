# sdcpp-restapi: `just serve` runs the server, `just test` runs the test suite.
# Both create or refresh the virtual environment and build the CPU backend if it is missing.

set shell := ["bash", "-euo", "pipefail", "-c"]

python := env_var_or_default("PYTHON", "python3")
venv := ".venv"
bin := venv / "bin"

# list the recipes
default:
    @just --list

# create the virtual environment, or refresh it when pyproject.toml changed
venv:
    #!/usr/bin/env bash
    set -euo pipefail
    stamp="{{venv}}/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -x "{{bin}}/python" ]; then {{python}} -m venv "{{venv}}"; fi
    if [ ! -f "$stamp" ]; then
        "{{bin}}/python" -m pip install --quiet --upgrade pip
        "{{bin}}/python" -m pip install --quiet -e ".[test]"
        rm -f {{venv}}/.installed-* && touch "$stamp"
    fi

# build (once) and install a backend's sd-cli / sd-server: cpu, cuda, vulkan, rocm or metal
backend name="cpu": venv
    {{bin}}/python bin/build-backend {{name}}

# Opt-in, NOT part of `just test` (~20 min per architecture on 2 cores). Builds into its own data folder
# (SDCPP_CHECK_CUDA_DATA_DIR, default ~/.local/share/sdcpp-restapi-check-cuda); the tiny image runs on the GPU, or on
# the CPU fallback where there is no driver.
# build the CUDA backend apart (opt-in, slow) and check its binaries link, run and make a tiny image
check-cuda arch="90" jobs="2": venv
    #!/usr/bin/env bash
    set -euo pipefail
    export SDCPP_RESTAPI_DATA_DIR="${SDCPP_CHECK_CUDA_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/sdcpp-restapi-check-cuda}"
    nice -n 19 {{bin}}/python bin/build-backend cuda --cuda-arch "{{arch}}" -j {{jobs}}
    {{bin}}/python -m fixtures.tiny_models "$SDCPP_RESTAPI_DATA_DIR/tiny-models" > /dev/null
    {{bin}}/python -m runners.backend_check cuda --models "$SDCPP_RESTAPI_DATA_DIR/tiny-models"

# Opt-in like check-cuda (~10 min on 2 cores); data folder SDCPP_CHECK_VULKAN_DATA_DIR. Fetches Debian 13's Vulkan
# headers into the build folder when the system's are older than 1.3.272; lavapipe is device 0 where there is no GPU.
# build the Vulkan backend apart (opt-in, slow) and make a tiny image on Vulkan device 0
check-vulkan jobs="2": venv
    #!/usr/bin/env bash
    set -euo pipefail
    export SDCPP_RESTAPI_DATA_DIR="${SDCPP_CHECK_VULKAN_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/sdcpp-restapi-check-vulkan}"
    nice -n 19 {{bin}}/python bin/build-backend vulkan -j {{jobs}}
    {{bin}}/python -m fixtures.tiny_models "$SDCPP_RESTAPI_DATA_DIR/tiny-models" > /dev/null
    GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}" {{bin}}/python -m runners.backend_check vulkan --models "$SDCPP_RESTAPI_DATA_DIR/tiny-models"

# start the API server (extra flags go to `sdcpp-restapi serve`, e.g. `just serve --port 9000`)
serve *args: venv backend
    {{bin}}/sdcpp-restapi serve {{args}}

# check the set-up `serve` would use and print each problem with its fix (same flags as serve)
doctor *args: venv
    {{bin}}/sdcpp-restapi doctor {{args}}

# lint (ruff), format check (ruff format) and static types (mypy), as configured in pyproject.toml
lint: venv
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .
    {{bin}}/mypy

# lint and type-check, then run the unit and integration tests against the real CPU binary
test *args: venv lint backend
    {{bin}}/python -m pytest {{args}}

# write the tiny random-weight test models into DIR (e.g. your models folder)
tiny-models dir: venv
    {{bin}}/python -m fixtures.tiny_models {{dir}}

# write full-size random-weight models into DIR: sd15 sd15-controlnet sd15-embedding sd15-vae sd15-lora sdxl
random-models dir +families: venv
    {{bin}}/python -m fixtures.random_models {{dir}} {{families}}

# compare the API with bare sd-cli / sd-server on the same work
bench *args: venv backend
    {{bin}}/python -m bench {{args}}
