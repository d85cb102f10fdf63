"""The Litestar application: routes, dependency wiring, error mapping and the service life cycle."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from litestar_app.deps import provide_service
from litestar_app.errors import EXCEPTION_HANDLERS
from litestar_app import websocket
from litestar_app.routes import generation, health, info, llm, models, output, preview, queue, upscaler
from litestar_app.websocket import standalone_server
from orchestrator.service import Service

ROUTE_MODULES = (health, models, info, generation, upscaler, queue, preview, output, llm, websocket)


def create_app(service: Service) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with service.running():
            if service.settings.ws_port:
                async with standalone_server(service, service.settings.host, service.settings.ws_port):
                    yield
            else:
                yield

    return Litestar(
        route_handlers=[handler for module in ROUTE_MODULES for handler in module.ROUTES],
        dependencies={"service": Provide(provide_service, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=[lifespan],
        state=State({"service": service}),
        request_max_body_size=None,  # bounded in litestar_app.body (base64 images are large)
        openapi_config=None,
        logging_config=None,  # logging is configured once, by the CLI
    )
