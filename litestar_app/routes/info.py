from __future__ import annotations

from typing import Any

import msgspec
from litestar import get

from orchestrator.architecture import PRESETS
from orchestrator.service import Service
from runners.capabilities import QUANT_INFO


@get("/options", sync_to_thread=False)
def options(service: Service) -> dict[str, Any]:
    caps = service.capabilities
    return {
        "samplers": list(caps.samplers),
        "schedulers": list(caps.schedulers),
        "quantization_types": [
            {"id": kind, "name": QUANT_INFO.get(kind, (kind.upper(), 0))[0], "bits": QUANT_INFO.get(kind, ("", 0))[1]}
            for kind in caps.weight_types
        ],
        "preview_modes": list(caps.preview_modes),
        "rng_types": list(caps.rng_types),
        # What this service cannot do with sd.cpp, so clients need not find out by trial.
        "unsupported": {
            "upscale_factor": "fixed by the ESRGAN model (x1, x2 or x4 per pass); other factors are reached "
                              "only as powers of it via repeats",
            "photo_maker": "PhotoMaker inputs (pm_*) run on sd-cli, never on the resident sd-server",
        },
    }


@get("/architectures", sync_to_thread=False)
def architectures(service: Service) -> dict[str, Any]:
    loaded = service.models.loaded
    preset_name = service.models.preset_name()
    return {
        "architectures": msgspec.to_builtins(PRESETS),
        "current_architecture": loaded.architecture.variant if loaded and loaded.architecture else None,
        "current_preset": msgspec.to_builtins(PRESETS[preset_name]) if preset_name else None,
    }


ROUTES = [options, architectures]
