"""sd-server's conventions, so its clients can switch to this server unchanged: `<sd_cpp_extra_args>{json}
</sd_cpp_extra_args>` in a prompt (sd-server's native request fields, parsed and removed) and the structured
`lora` list ({path, multiplier, is_high_noise}, paths relative to the LoRA folder)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import msgspec

from core.errors import BadRequest
from core.request_types import check_json_numbers, convert_request
from runners.options import fields_from_server_body

EXTRA_ARGS = re.compile(r"<sd_cpp_extra_args>(.*?)</sd_cpp_extra_args>", re.DOTALL)
# sd-server's native names for what our requests name otherwise (its images are base64 there too)
NATIVE_NAMES = {
    "init_image": "init_image_base64",
    "mask_image": "mask_image_base64",
    "end_image": "end_image_base64",
    "control_image": "control_image_base64",
}
# sd-server's `cache_option` keys (`threshold=0.2,start=0.15,end=0.95`) -> our EasyCache fields
CACHE_OPTIONS = {"threshold": "easycache_threshold", "start": "easycache_start", "end": "easycache_end"}


class LoraItem(msgspec.Struct):
    path: str
    multiplier: float = 1.0
    is_high_noise: bool = False


def extract_extra_args(prompt: str) -> tuple[str, dict[str, object]]:
    """The prompt without the embedded blocks, and the API fields they set."""
    fields: dict[str, object] = {}
    for block in EXTRA_ARGS.findall(prompt):
        try:
            native = msgspec.json.decode(block, type=dict[str, object])
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            check_json_numbers(block)  # 1e999, NaN: refused naming the field, as on every face
            raise BadRequest("prompt: invalid sd_cpp_extra_args (not a JSON object, or nested too deeply)") from None
        fields.update(fields_from_server_body(native))
    clean = EXTRA_ARGS.sub("", prompt).strip()
    for native_name, ours in NATIVE_NAMES.items():
        if native_name in fields:
            fields[ours] = fields.pop(native_name)
    if "lora" in fields:
        try:
            items = convert_request(fields.pop("lora"), list[LoraItem])
        except BadRequest as exc:
            raise BadRequest(f"prompt: sd_cpp_extra_args lora: {exc.message}") from None
        clean = f"{clean} {lora_tags(items)}".strip()
    if "cache_mode" in fields:
        mode = fields.pop("cache_mode")
        if mode != "easycache":
            raise BadRequest(f"prompt: sd_cpp_extra_args cache_mode: only 'easycache' is supported (got {mode!r})")
        fields["easycache"] = True
    if "cache_option" in fields:
        fields.update(_cache_options(fields.pop("cache_option")))
    return clean, fields


def _cache_options(option: object) -> dict[str, object]:
    """sd-server's `cache_option` text as our EasyCache fields (values checked by the request's own rules)."""
    fields: dict[str, object] = {}
    for item in str(option).split(","):
        key, _, value = item.partition("=")
        if key.strip() not in CACHE_OPTIONS:
            raise BadRequest(
                f"prompt: sd_cpp_extra_args cache_option: unknown key {key.strip()!r}; use {', '.join(CACHE_OPTIONS)}"
            )
        try:
            fields[CACHE_OPTIONS[key.strip()]] = float(value)
        except ValueError:
            raise BadRequest(f"prompt: sd_cpp_extra_args cache_option: {key.strip()} must be a number") from None
    return fields


def lora_tags(items: list[LoraItem]) -> str:
    """The structured list as `<lora:name:weight>` tags (checked against loras/ like any tag)."""
    tags = []
    for item in items:
        name = str(PurePosixPath(item.path).with_suffix("")) if PurePosixPath(item.path).suffix else item.path
        tags.append(f"<lora:{'|high_noise|' if item.is_high_noise else ''}{name}:{item.multiplier:g}>")
    return " ".join(tags)
