"""The Litestar application: routes, dependency wiring, OpenAPI, body limits, error mapping and the service
life cycle."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Iterable

from litestar import Litestar, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.response import Redirect

from core.request_types import ErrorBody
from core.service import Service
from litestar_app import websocket
from litestar_app.body import JsonRequest
from litestar_app.deps import provide_service
from litestar_app.errors import EXCEPTION_HANDLERS
from litestar_app.mcp_server import mcp_endpoint
from litestar_app.routes import generation, health, info, llm, login, models, output, preview, queue, upscaler
from litestar_app.security import SecurityMiddleware, SecurityPolicy
from litestar_app.websocket import standalone_server

ROUTE_MODULES = (health, models, info, generation, upscaler, queue, preview, output, llm, login, websocket)
SCHEMA_PATH = "/schema"  # /schema/openapi.json and the Swagger UI at /schema/swagger (/docs redirects there)
ERROR_RESPONSES = {
    status: ResponseSpec(ErrorBody, description=description, generate_examples=False)
    for status, description in (
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
}


@get("/docs", include_in_schema=False, sync_to_thread=False)
def docs() -> Redirect:
    return Redirect(f"{SCHEMA_PATH}/swagger")


def documented_errors(handlers: Iterable[BaseRouteHandler]) -> list[BaseRouteHandler]:
    """Every HTTP route documents the error schema for the error statuses it can answer."""
    listed = list(handlers)
    for handler in listed:
        if isinstance(handler, HTTPRouteHandler) and handler.include_in_schema:
            handler.responses = {**ERROR_RESPONSES, **(handler.responses or {})}
    return listed


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="sdcpp-restapi", version="0.1.0",
        description="REST API, job queue and live events around stable-diffusion.cpp (see README.md and "
                    "shared/spec/API.md). WebSocket events: ws://<host>:<ws_port>/ and /ws on this port.",
        path=SCHEMA_PATH, render_plugins=[JsonRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
    )


def create_app(service: Service) -> Litestar:
    mcp, mcp_sessions = mcp_endpoint(service)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with service.running(), mcp_sessions.run():
            if service.settings.ws_port:
                async with standalone_server(service, service.settings.host, service.settings.ws_port, policy):
                    yield
            else:
                yield

    settings = service.settings
    policy = SecurityPolicy(settings, service.session_secret)
    cors = CORSConfig(allow_origins=settings.cors.allow_origins, allow_credentials=True,
                      allow_headers=["Authorization", "X-API-Key", "Content-Type"]) if settings.cors.allow_origins else None
    return Litestar(
        route_handlers=[docs, mcp, *documented_errors(handler for module in ROUTE_MODULES for handler in module.ROUTES)],
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        state=State({"service": service, "policy": policy}),
        middleware=[SecurityMiddleware(policy)],
        cors_config=cors,
        request_class=JsonRequest,
        request_max_body_size=service.settings.limits.max_body_bytes,
        openapi_config=openapi_config(),
        logging_config=None,  # logging is configured once, by the CLI
    )
