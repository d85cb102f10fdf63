"""Dependencies point down: `litestar_app` -> `core` -> `runners`, and inside `core` each layer imports only its
own layer and the ones below it. Every import counts: top-level, inside functions, and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The layers of `core`, lowest first. A module belongs to the layer of its longest matching prefix; it may import
# modules of its own layer and of the layers below. Features own the narrow store protocols they take, the store
# implementation serves them all, and the service (with the job types it composes) assembles everything.
CORE_LAYERS: tuple[tuple[str, ...], ...] = (
    ("core.errors", "core.files", "core.safe_paths", "core.request_types", "core.stored_values", "core.limits"),
    ("core.jobs.schemas",),  # what a job is (its types and states), which events name
    ("core.events",),
    ("core.workers",),  # the worker pool and its scheduler: knows resident processes, not jobs or models
    ("core.jobs",),  # the queue that runs jobs and publishes their events
    ("core.models",),
    ("core.upscale",),  # the ESRGAN upscaler and /upscale jobs; generation chains it after a job
    ("core.generation",),
    ("core.compat", "core.prompt_help", "core.output", "core.login_sessions", "core.webhooks"),
    ("core.metrics",),  # reads the queue and the models, hears the events; the service assembles it
    ("core.hosts",),  # many hosts, one queue (PostgreSQL + Procrastinate): the queue's forwarder, worker hosts
    ("core.store",),
    ("core.settings",),
    ("core.service", "core.job_types", "core.legacy_json", "core.doctor"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    """Every module the source imports, anywhere in it (`from a.b import c` counts as a.b, and as a.b.c where that
    is a module of ours); `package` anchors relative imports."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if is_module(f"{base}.{alias.name}"))
    return found


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def layer_of(module: str) -> int | None:
    """The index of the layer whose longest prefix matches the module (None: not a core module)."""
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(CORE_LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return best[1] if best else None


def upward_imports() -> list[str]:
    found = []
    for path in python_files("core"):
        importer = module_name(path)
        if importer == "core":  # the package itself (empty)
            continue
        own = layer_of(importer)
        assert own is not None, f"{importer} is in no layer of CORE_LAYERS: add it to one"
        for imported in sorted(imported_modules(path)):
            target = layer_of(imported)
            if target is not None and target > own:
                found.append(f"{importer} (layer {own}) imports {imported} (layer {target})")
    return found


def test_core_imports_point_down() -> None:
    assert upward_imports() == []


@pytest.mark.parametrize(("package", "forbidden"), [("runners", ("core", "litestar_app")), ("core", ("litestar_app",))])
def test_lower_packages_never_import_higher_ones(package: str, forbidden: tuple[str, ...]) -> None:
    offending = [
        f"{module_name(path)} imports {imported}"
        for path in python_files(package)
        for imported in sorted(imported_modules(path))
        if any(imported == name or imported.startswith(name + ".") for name in forbidden)
    ]
    assert offending == []


def test_the_import_scan_sees_function_level_and_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.service import Service\n"
        "def f():\n    import core.settings\n    from .store import sqlite\n"
    )
    found = imports_in(source, "core")
    assert {"core.service", "core.settings", "core.store", "core.store.sqlite"} <= found
    assert "core.service.Service" not in found  # a name, not a module
    assert layer_of("core.store.sqlite") == layer_of("core.store") == CORE_LAYERS.index(("core.store",))
    assert layer_of("litestar_app.app") is None
