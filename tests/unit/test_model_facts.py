"""The model facts are declared once (COMPONENTS, MODEL_TYPES); the structs that spell them out for clients and the
OpenAPI document, and the runners' flag table, must agree with those declarations."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import msgspec

from core.models.architecture import PRESETS
from core.models.components import COMPONENTS, REPORTED_COMPONENTS
from core.models.library import ModelLibrary
from core.models.schemas import LoadedComponents, LoadModelRequest, MainModelType, ModelListing, ModelPaths
from core.models.types import BY_NAME, MODEL_TYPES
from runners.options import CONTEXT_FLAGS

MAIN_MODEL_FIELDS = ("model_name", "model_type")
LISTING_EXTRAS = ("loaded_model", "loaded_model_type", "applied_filters")


def test_the_load_request_has_one_field_per_component_in_the_tables_order() -> None:
    fields = LoadModelRequest.__struct_fields__
    assert fields == (*MAIN_MODEL_FIELDS, *(component.field for component in COMPONENTS), "options")


def test_loaded_components_are_the_reported_components() -> None:
    assert LoadedComponents.__struct_fields__ == REPORTED_COMPONENTS
    # The contract's seven, in its order.
    assert REPORTED_COMPONENTS == ("vae", "clip_l", "clip_g", "t5xxl", "controlnet", "llm", "llm_vision")


def test_each_component_lives_in_a_model_folder_and_has_a_context_flag() -> None:
    flagged = {flag.field: flag.flag for flag in CONTEXT_FLAGS}
    for component in COMPONENTS:
        assert component.model_type in BY_NAME, component
        assert flagged.get(component.field, "").startswith("--"), f"no context flag for {component.field}"
    # The main model's own roles too.
    assert {kind.name for kind in MODEL_TYPES if kind.loadable} <= flagged.keys()


def test_model_listing_has_one_list_per_model_type_in_the_tables_order() -> None:
    assert ModelListing.__struct_fields__ == (*(kind.list_key for kind in MODEL_TYPES), *LISTING_EXTRAS)


def test_model_paths_has_one_key_per_model_type(tmp_path: Path) -> None:
    assert set(ModelPaths.__struct_fields__) == {kind.path_key for kind in MODEL_TYPES}
    assert len(ModelPaths.__struct_fields__) == len(MODEL_TYPES)
    library = ModelLibrary({kind.folder: tmp_path / kind.folder for kind in MODEL_TYPES})
    paths = msgspec.to_builtins(library.paths())
    assert paths == {kind.path_key: str(tmp_path / kind.folder) for kind in MODEL_TYPES}
    assert paths["lora"] == str(tmp_path / "loras")  # the spec's example spells the loras folder "lora"


def test_the_main_model_type_literal_names_the_loadable_types() -> None:
    assert set(get_args(MainModelType)) == {kind.name for kind in MODEL_TYPES if kind.loadable}


def test_model_types_are_unique_by_name_folder_and_key() -> None:
    for attribute in ("name", "folder", "list_key", "path_key"):
        values = [getattr(kind, attribute) for kind in MODEL_TYPES]
        assert len(set(values)) == len(values), attribute


def test_presets_name_only_components_and_model_types() -> None:
    """A preset's required and optional parts are load components (a load form offers them) or model types used per
    job (lora, embedding)."""
    known = {component.field for component in COMPONENTS} | set(BY_NAME)
    for family, preset in PRESETS.items():
        assert set(preset.required) <= {component.field for component in COMPONENTS}, family
        assert set(preset.optional) <= known, family
