"""The worker protocol has one definition, the structs in runners/worker_protocol.py: worker.cpp's header comment is made
from them, and the fields and modes the C++ side accepts are theirs."""

from __future__ import annotations

import re
from typing import get_args

import msgspec

from runners.worker_protocol import (
    WORKER_SOURCE,
    CancelRequest,
    JobRequest,
    LoadRequest,
    Message,
    PreviewRequest,
    UnloadRequest,
    committed_protocol_comment,
    protocol_comment,
)


def test_the_header_comment_is_made_from_the_structs() -> None:
    committed = committed_protocol_comment(WORKER_SOURCE.read_text())
    assert committed == protocol_comment(), "run `python -m runners.worker_protocol` and commit worker.cpp"


def cpp_set(name: str) -> set[str]:
    """The strings of `static const std::set<std::string> <name> = {...}` in worker.cpp."""
    match = re.search(rf"std::set<std::string> {name}\s*=\s*\{{([^}}]*)\}}", WORKER_SOURCE.read_text())
    assert match, name
    return set(re.findall(r'"([^"]*)"', match.group(1)))


def test_the_worker_accepts_exactly_the_structs_fields() -> None:
    assert cpp_set("fields") == {field.encode_name for field in msgspec.structs.fields(JobRequest)}
    assert cpp_set("preview_fields") == {field.encode_name for field in msgspec.structs.fields(PreviewRequest)}
    assert cpp_set("cancel_fields") == {field.encode_name for field in msgspec.structs.fields(CancelRequest)}
    assert cpp_set("load_fields") == {field.encode_name for field in msgspec.structs.fields(LoadRequest)}
    assert cpp_set("unload_fields") == {field.encode_name for field in msgspec.structs.fields(UnloadRequest)}


def test_load_and_unload_lines_are_told_apart_by_their_first_field() -> None:
    job_fields = {field.encode_name for field in msgspec.structs.fields(JobRequest)}
    for struct in (LoadRequest, UnloadRequest):
        first = msgspec.structs.fields(struct)[0].encode_name
        assert first not in job_fields
        assert f'request.contains("{first}")' in WORKER_SOURCE.read_text()


def test_a_cancel_line_is_told_from_a_job_line_by_its_one_field() -> None:
    [field] = msgspec.structs.fields(CancelRequest)
    assert field.encode_name not in {job_field.encode_name for job_field in msgspec.structs.fields(JobRequest)}
    assert f'request.contains("{field.encode_name}")' in WORKER_SOURCE.read_text()


def modes(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    [mode] = [field.type for field in info.fields if field.name == "mode"]
    assert isinstance(mode, msgspec.inspect.LiteralType)
    return tuple(str(value) for value in mode.values)


def test_the_worker_knows_exactly_the_structs_modes() -> None:
    source = WORKER_SOURCE.read_text()
    check = source[source.index("static std::string check_job") : source.index("static void run(")]
    compared = set(re.findall(r'[!=]= "(\w+)"', check))  # the values the checks let through
    assert compared == {*modes(JobRequest), *modes(PreviewRequest)}


def test_the_comment_names_every_message_and_field() -> None:
    text = protocol_comment()
    for struct in (JobRequest, PreviewRequest, CancelRequest, LoadRequest, UnloadRequest, *get_args(Message)):
        assert f"\n// {struct.__name__} {{" in text
        for field in msgspec.structs.fields(struct):
            assert f'"{field.encode_name}"' in text
