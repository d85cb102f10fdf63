"""The configured bounds on requests ([limits] in the config): checked where generation requests are submitted
(and the body size and queue length by the web layer and the queue, which the service hands them)."""

from __future__ import annotations

import msgspec


class Limits(msgspec.Struct, forbid_unknown_fields=True):
    """Bounds on what a client may ask for; sd.cpp itself would accept (and try) absurd values."""

    max_width: int = 4096
    max_height: int = 4096
    max_steps: int = 1000
    max_batch_count: int = 64
    max_image_bytes: int = 50 * 1024 * 1024  # decoded size of one base64 input image
    max_image_pixels: int = 64 * 1024 * 1024  # decompression-bomb guard for input images
    # Request bodies larger than this get 413 before they are read (base64 images make bodies large).
    max_body_bytes: int = 200 * 1024 * 1024
    max_prompt_chars: int = 20_000  # prompt and negative_prompt, each
    max_pending: int = 1000  # jobs waiting in the queue; past it, 429 with Retry-After
