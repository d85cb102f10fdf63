"""The Litestar application: routes, dependency wiring, OpenAPI, body limits, error mapping and the service
life cycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide

from core.jobs.idempotency import HEADER as IDEMPOTENCY_HEADER
from core.service import Service
from litestar_app import websocket
from litestar_app.body import JsonRequest, check_query
from litestar_app.deps import provide_service
from litestar_app.errors import EXCEPTION_HANDLERS
from litestar_app.mcp_server import mcp_endpoint
from litestar_app.openapi import docs, docs_assets, documented_errors, openapi_config
from litestar_app.routes import (
    a1111,
    generation,
    jobs,
    login,
    metrics,
    models,
    openai,
    output,
    prompt_help,
    ui,
    upscale,
)
from litestar_app.routes.metrics import response_counter
from litestar_app.security import SecurityMiddleware, SecurityPolicy
from litestar_app.websocket import standalone_server

ROUTE_MODULES = (models, upscale, generation, jobs, output, prompt_help, login, websocket, a1111, openai, ui, metrics)


def create_app(service: Service) -> Litestar:
    settings = service.settings
    policy = SecurityPolicy(settings, service.sessions)
    mcp, mcp_sessions = mcp_endpoint(service, policy.output_url)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with service.running(), mcp_sessions.run():
            if service.settings.ws_port:
                async with standalone_server(service, service.settings.host, service.settings.ws_port, policy):
                    yield
            else:
                yield

    cors = (
        CORSConfig(
            allow_origins=settings.cors.allow_origins,
            allow_credentials=True,
            allow_headers=["Authorization", "X-API-Key", "Content-Type", IDEMPOTENCY_HEADER],
        )
        if settings.cors.allow_origins
        else None
    )
    return Litestar(
        route_handlers=[
            docs,
            docs_assets,
            mcp,
            *documented_errors(handler for module in ROUTE_MODULES for handler in module.ROUTES),
        ],
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"service": service, "policy": policy}),
        middleware=[SecurityMiddleware(policy)],
        before_send=[response_counter(service.metrics)],
        before_request=check_query,
        cors_config=cors,
        request_class=JsonRequest,
        request_max_body_size=service.settings.limits.max_body_bytes,
        openapi_config=openapi_config(),
        logging_config=None,  # logging is configured once, by the CLI
    )
