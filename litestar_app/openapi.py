"""The OpenAPI document (/schema/openapi.json), the Swagger UI (/docs) and the error responses every route
documents. Swagger UI's files come from the `swagger-ui-py` package's static/ folder (installed from PyPI with the
service, never committed) and are served on this origin at /docs-assets/, so /docs works without the internet."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from litestar import get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from core.request_types import ErrorBody

H = TypeVar("H")
SCHEMA_PATH = "/schema"  # /schema/openapi.json and the Swagger UI at /schema/swagger (/docs redirects there)
DOCS_ASSETS = "/docs-assets"  # Swagger UI's dist files (its js, css and standalone preset)


def swagger_ui_folder() -> Path:
    """swagger-ui-py's static/ folder, found without importing the package (its code is for other frameworks)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("the swagger-ui-py package is missing: reinstall sdcpp-restapi (pip install .)")
    return Path(spec.origin).parent / "static"


ERROR_STATUSES: tuple[tuple[int, str], ...] = (
    (400, "Bad request: the message names the field and the rule it broke"),
    (401, "An API key is required (see the Security section of README.md)"),
    (403, "Cross-site request, or a Host name that is not allowed"),
    (404, "Not found"),
    (413, "The request body is larger than limits.max_body_bytes"),
    (415, "A request body must be declared as application/json"),
    (429, "The queue is full (limits.max_pending); see Retry-After"),
    (500, "Internal error, or a model that could not be loaded"),
    (502, "An upstream service (Ollama, CivitAI, HuggingFace) failed"),
)


@get("/docs", include_in_schema=False, sync_to_thread=False)
def docs() -> Redirect:
    return Redirect(f"{SCHEMA_PATH}/swagger")


docs_assets = create_static_files_router(
    DOCS_ASSETS, directories=[swagger_ui_folder()], name="docs-assets", include_in_schema=False
)


def documented_errors(handlers: Iterable[H], body: type = ErrorBody) -> list[H]:
    """Every HTTP route documents the error statuses it can answer, with its API's error body (ours, or the shape
    AUTOMATIC1111 or OpenAI clients expect on their routes)."""
    responses = {
        status: ResponseSpec(body, description=description, generate_examples=False)
        for status, description in ERROR_STATUSES
    }
    listed = list(handlers)
    for handler in listed:
        if isinstance(handler, HTTPRouteHandler) and handler.include_in_schema:
            handler.responses = {**responses, **(handler.responses or {})}
    return listed


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="sdcpp-restapi",
        version="0.1.0",
        description="REST API, job queue and live events around stable-diffusion.cpp (see README.md and "
        "shared/spec/API.md). WebSocket events: ws://<host>:<ws_port>/ and /ws on this port.",
        path=SCHEMA_PATH,
        render_plugins=[
            JsonRenderPlugin(),
            SwaggerRenderPlugin(
                path="/swagger",
                js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                favicon="<link rel='icon' type='image/svg+xml' href='/ui/favicon.svg'>",
            ),
        ],
    )
