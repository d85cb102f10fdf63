"""`/mcp`: the Model Context Protocol over streamable HTTP, built with the `mcp` package's low-level server and
session manager (run in the app's lifespan), mounted into Litestar behind the same security policy as every
route (API keys as Bearer, cross-site and Host checks)."""

from __future__ import annotations

import base64
import logging

import msgspec
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.types import Receive, Scope, Send
from mcp import MCPError, types
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from core.jobs.schemas import QueueQuery
from core.service import Service
from litestar_app.mcp_tools import (
    GENERATE_SCHEMA,
    JOB_SCHEMA,
    MODEL_SCHEMA,
    TOOL_DESCRIPTIONS,
    AgentTools,
    OutputLink,
    failure_message,
)

log = logging.getLogger("sdcpp_restapi")
RESOURCE_NOT_FOUND = -32002
JOB_TEMPLATE = "sdcpp://queue/{job_id}"
# uri -> (name, description)
RESOURCES = {
    "sdcpp://health": ("health", "Server state: loaded model and upscaler, loading, last error (GET /health)"),
    "sdcpp://models": ("models", "Every model file by type (GET /models)"),
    "sdcpp://models/loaded": ("loaded model", "The loaded model, its architecture and components"),
    "sdcpp://queue": ("queue", "Queue counts, pending and running jobs and the newest finished ones (GET /queue)"),
    "sdcpp://architectures": ("architectures", "Architecture presets and the loaded model's (GET /architectures)"),
}
TOOL_SCHEMAS = {"generate": GENERATE_SCHEMA, "model": MODEL_SCHEMA, "job": JOB_SCHEMA}
_encode = msgspec.json.Encoder().encode


def _text(value: msgspec.Struct) -> types.TextContent:
    return types.TextContent(type="text", text=_encode(value).decode())


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def _base_url(ctx: ServerRequestContext) -> str:
    """The server as the agent reached it, for the output URLs it is given."""
    request = ctx.request
    headers = getattr(request, "headers", None)
    host = headers.get("host") if headers is not None else None
    return f"http://{host}" if host else ""


def build_server(service: Service, output_link: OutputLink) -> Server:
    tools = AgentTools(service, output_link)

    async def list_tools(
        ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=name, description=TOOL_DESCRIPTIONS[name], input_schema=schema)
                for name, schema in TOOL_SCHEMAS.items()
            ]
        )

    async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
        arguments = dict(params.arguments or {})
        try:
            if params.name == "generate":
                result = await tools.generate(arguments, ctx.session.report_progress, _base_url(ctx))
                if result.error:
                    return _error(f"job {result.job_id} {result.status}: {result.error}")
                images = [
                    types.ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png")
                    for png in await tools.thumbnails(result)
                ]
                return types.CallToolResult(content=[_text(result), *images])
            if params.name == "model":
                return types.CallToolResult(content=[_text(await tools.model(arguments))])
            if params.name == "job":
                return types.CallToolResult(content=[_text(await tools.job(arguments))])
        except Exception as exc:
            message = failure_message(exc)
            if message is None:
                log.exception("MCP tool %s failed", params.name)
                message = f"Internal error: {type(exc).__name__}"
            return _error(message)
        return _error(f"unknown tool '{params.name}': use generate, model or job")

    async def list_resources(
        ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(uri=uri, name=name, description=description, mime_type="application/json")
                for uri, (name, description) in RESOURCES.items()
            ]
        )

    async def list_templates(
        ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=JOB_TEMPLATE,
                    name="job",
                    description="One job (GET /queue/{job_id})",
                    mime_type="application/json",
                )
            ]
        )

    async def read_resource(
        ctx: ServerRequestContext, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            value = await _resource(service, uri)
        except Exception as exc:
            raise MCPError(code=RESOURCE_NOT_FOUND, message=failure_message(exc) or f"cannot read {uri}") from None
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=_encode(value).decode())]
        )

    return Server(
        "sdcpp-restapi",
        version="0.1.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


async def _resource(service: Service, uri: str) -> msgspec.Struct:
    if uri == "sdcpp://health":
        return service.health()
    if uri == "sdcpp://models/loaded":
        return service.loaded_model()
    if uri == "sdcpp://models":
        return await service.library.listing(service.hashes, service.models.loaded, None, None, None)
    if uri == "sdcpp://queue":
        return await service.queue.listing(QueueQuery())
    if uri == "sdcpp://architectures":
        return service.architectures()
    prefix = JOB_TEMPLATE.split("{", 1)[0]
    if uri.startswith(prefix):
        return await service.queue.get(uri.removeprefix(prefix))
    raise MCPError(code=RESOURCE_NOT_FOUND, message=f"no such resource: {uri}")


def mcp_endpoint(service: Service, output_link: OutputLink) -> tuple[ASGIRouteHandler, StreamableHTTPSessionManager]:
    """The `/mcp` route and its session manager (whose `run()` the app's lifespan must enter); `output_link` makes
    the result URLs (signed when keys are set, so the agent's tools can fetch them without the key)."""
    manager = StreamableHTTPSessionManager(
        app=build_server(service, output_link), stateless=False, json_response=False, security_settings=None
    )  # Host and Origin: litestar_app.security

    @asgi("/mcp", copy_scope=True)
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        # The same ASGI callables; the mcp package types them as plain mappings.
        await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]

    return endpoint, manager
