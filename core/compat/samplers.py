"""AUTOMATIC1111 sampler and scheduler names -> sd.cpp's. A1111 before 1.9 put the schedule in the sampler name
("DPM++ 2M Karras"); 1.9+ sends it separately (`scheduler`). sd.cpp's own names are accepted as they are."""

from __future__ import annotations

from core.errors import BadRequest

# A1111 sampler display name (lower case) -> sd.cpp sampler
SAMPLERS: dict[str, str] = {
    "euler a": "euler_a",
    "euler": "euler",
    "heun": "heun",
    "dpm2": "dpm2",
    "dpm++ 2s a": "dpm++2s_a",
    "dpm++ 2m": "dpm++2m",
    "lcm": "lcm",
    "ddim": "ddim_trailing",
    "tcd": "tcd",
    "ipndm": "ipndm",
    "ipndm_v": "ipndm_v",
    "res multistep": "res_multistep",
    "res 2s": "res_2s",
    # k-diffusion aliases some clients send
    "k_euler_a": "euler_a",
    "k_euler": "euler",
    "k_heun": "heun",
    "k_dpm_2": "dpm2",
    "k_dpmpp_2s_a": "dpm++2s_a",
    "k_dpmpp_2m": "dpm++2m",
    "k_lcm": "lcm",
}
# A1111 scheduler label or the suffix of an old-style sampler name (lower case) -> sd.cpp scheduler
SCHEDULERS: dict[str, str] = {
    "automatic": "",
    "normal": "discrete",
    "uniform": "discrete",
    "karras": "karras",
    "exponential": "exponential",
    "sgm uniform": "sgm_uniform",
    "simple": "simple",
    "align your steps": "ays",
    "kl optimal": "kl_optimal",
    "lcm": "lcm",
    "sgmuniform": "sgm_uniform",  # A1111's alias of SGM Uniform
    "align your steps gits": "gits",
    "align your steps 11": "ays",
    "align your steps 32": "ays",
    # Schedulers A1111 lists that sd.cpp has no counterpart for: the model's default, as A1111 itself does with a
    # scheduler name it does not know (sd_samplers.get_sampler_and_scheduler falls back to Automatic).
    "beta": "",
    "polyexponential": "",
    "ddim": "",
    "turbo": "",
}
SUFFIXES = ("karras", "exponential", "sgm uniform")
# The names /sdapi/v1/samplers lists (display form), in A1111's order where it has them.
LISTED_SAMPLERS: dict[str, str] = {
    "Euler a": "euler_a",
    "Euler": "euler",
    "Heun": "heun",
    "DPM2": "dpm2",
    "DPM++ 2S a": "dpm++2s_a",
    "DPM++ 2M": "dpm++2m",
    "LCM": "lcm",
    "DDIM": "ddim_trailing",
    "TCD": "tcd",
    "iPNDM": "ipndm",
    "iPNDM_v": "ipndm_v",
    "Res Multistep": "res_multistep",
    "Res 2s": "res_2s",
}
LISTED_SCHEDULERS: dict[str, str] = {
    "automatic": "Automatic",
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "simple": "Simple",
    "align_your_steps": "Align Your Steps",
    "kl_optimal": "KL Optimal",
}


def sd_sampler(
    name: str,
    scheduler: str | None,
    available: tuple[str, ...],
    schedulers: tuple[str, ...],
    field: str = "sampler_name",
) -> tuple[str, str]:
    """(sd.cpp sampler, sd.cpp scheduler or "" for the model's default) for A1111's sampler and scheduler."""
    key = name.strip().lower()
    schedule = ""
    for suffix in SUFFIXES:
        if key.endswith(" " + suffix):
            key, schedule = key.removesuffix(" " + suffix), SCHEDULERS[suffix]
    sampler = name if name in available else SAMPLERS.get(key)
    if not name:
        sampler = ""
    if sampler is None or (sampler and sampler not in available):
        known = [listed for listed, ours in LISTED_SAMPLERS.items() if ours in available]
        known += [ours for ours in available if ours not in LISTED_SAMPLERS.values()]
        raise BadRequest(f"{field}: unknown sampler '{name}'; use one of: {', '.join(known)}")
    if scheduler:
        label = scheduler.strip().lower().replace("_", " ")
        mapped = SCHEDULERS.get(label, scheduler if scheduler in schedulers else None)
        if mapped is None:
            raise BadRequest(
                f"scheduler: unknown scheduler '{scheduler}'; use one of: "
                f"{', '.join([*LISTED_SCHEDULERS.values(), *schedulers])}"
            )
        schedule = mapped or schedule
    return sampler, schedule
