from __future__ import annotations

import msgspec
from litestar import get

from core.models.architecture import Architectures
from core.service import Service
from runners.capabilities import QUANT_INFO


class QuantizationType(msgspec.Struct):
    id: str
    name: str
    bits: int


class Options(msgspec.Struct):
    samplers: list[str]
    schedulers: list[str]
    quantization_types: list[QuantizationType]
    preview_modes: list[str]
    rng_types: list[str]
    # What this service cannot do with sd.cpp, so clients need not find out by trial: topic -> why.
    unsupported: dict[str, str]


UNSUPPORTED = {
    "upscale_factor": "fixed by the ESRGAN model (x1, x2 or x4 per pass); other factors are reached only as powers "
                      "of it via repeats",
    "photo_maker": "PhotoMaker inputs (pm_*) run on sd-cli, never on the resident sd-server",
}


@get("/options", sync_to_thread=False, summary="Samplers, schedulers, quantizations and preview modes of the binary")
def options(service: Service) -> Options:
    caps = service.capabilities
    return Options(
        samplers=list(caps.samplers), schedulers=list(caps.schedulers),
        quantization_types=[QuantizationType(kind, *QUANT_INFO.get(kind, (kind.upper(), 0)))
                            for kind in caps.weight_types],
        preview_modes=list(caps.preview_modes), rng_types=list(caps.rng_types), unsupported=UNSUPPORTED)


@get("/architectures", sync_to_thread=False, summary="Architecture presets and the loaded model's")
def architectures(service: Service) -> Architectures:
    return service.architectures()


ROUTES = [options, architectures]
