"""sd-server's conventions, so its clients can switch to this server unchanged: `<sd_cpp_extra_args>{json}
</sd_cpp_extra_args>` in a prompt (sd-server's native request fields, parsed and removed) and the structured
`lora` list ({path, multiplier, is_high_noise}, paths relative to the LoRA folder)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import msgspec

from core.errors import BadRequest
from core.request_types import check_json_numbers
from runners.options import fields_from_server_body

EXTRA_ARGS = re.compile(r"<sd_cpp_extra_args>(.*?)</sd_cpp_extra_args>", re.DOTALL)


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
    return EXTRA_ARGS.sub("", prompt).strip(), fields


def lora_tags(items: list[LoraItem]) -> str:
    """The structured list as `<lora:name:weight>` tags (checked against loras/ like any tag)."""
    tags = []
    for item in items:
        name = str(PurePosixPath(item.path).with_suffix("")) if PurePosixPath(item.path).suffix else item.path
        tags.append(f"<lora:{'|high_noise|' if item.is_high_noise else ''}{name}:{item.multiplier:g}>")
    return " ".join(tags)
