"""The route of core.metrics: GET /metrics for Prometheus (ours, not the contract's), and the hook that counts
every HTTP response by route template and status."""

from __future__ import annotations

from litestar import Response, get
from litestar.enums import ScopeType
from litestar.types import BeforeMessageSendHookHandler, Message, Scope

from core.metrics import CONTENT_TYPE, ServiceMetrics
from core.service import Service

METRICS_PATH = "/metrics"


# On the event loop, not in a thread: the collectors read the queue's and the model manager's in-memory state,
# which only the loop changes; a scrape reads memory only, so it does not block the loop for long.
@get(METRICS_PATH, summary="Prometheus metrics (text format 0.0.4)", media_type=CONTENT_TYPE, sync_to_thread=False)
def metrics(service: Service) -> Response[bytes]:
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)


def response_counter(counted: ServiceMetrics) -> BeforeMessageSendHookHandler:
    """A before-send hook counting each HTTP response as it starts: refusals (401, 403) and 404s included, under
    the route's path template (`/queue/{job_id}`), never the raw path."""

    async def count(message: Message, scope: Scope) -> None:  # async: a sync hook would run in a thread per message
        if message["type"] == "http.response.start" and scope["type"] == ScopeType.HTTP:
            template = scope.get("path_template") or None
            counted.http_request(scope["method"], template, message["status"])

    return count


ROUTES = [metrics]
