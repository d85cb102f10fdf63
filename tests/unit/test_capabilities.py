from __future__ import annotations

from runners.capabilities import parse_help

HELP = """Generation Options:
  --preview                     preview method. must be one of the following [none, proj, tae, vae] (default is none)
  --type                                   weight type (examples: f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K,
                                           q4_K). If not specified, the default is the type of the weight file
  --rng                                    RNG, one of [std_default, cuda, cpu], default: cuda(sd-webui), cpu(comfyui)
  --sampling-method                        sampling method, one of [euler, euler_a, heun, dpm2, dpm++2s_a, dpm++2m,
                                           dpm++2mv2, ipndm] (default: euler for Flux/SD3/Wan, euler_a otherwise)
  --scheduler                              denoiser sigma scheduler, one of [discrete, karras, exponential, ays, gits,
                                           smoothstep], default:
                                           discrete
"""


def test_lists_are_read_from_help_including_continuation_lines() -> None:
    caps = parse_help(HELP)
    assert caps.samplers == ("euler", "euler_a", "heun", "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2", "ipndm")
    assert caps.schedulers == ("discrete", "karras", "exponential", "ays", "gits", "smoothstep")
    assert caps.preview_modes == ("none", "proj", "tae", "vae")
    assert caps.rng_types == ("std_default", "cuda", "cpu")
    assert caps.weight_types == ("f32", "f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k")
