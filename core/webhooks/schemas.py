"""What webhooks send and keep: the settings, the message body (a typed struct) and a pending delivery."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from core.jobs.schemas import Job

SECRET_PREFIX = "whsec_"
# Seconds between one attempt and the next: attempt 1 at once, 2 after 10 s, 3 after 60 s more (70 s: the first
# three fall within two minutes), then 5 min, 30 min, 2 h and 6 h; after the 7th failed attempt it is given up.
RETRY_DELAYS_S = (10.0, 60.0, 300.0, 1800.0, 7200.0, 21600.0)


class WebhookSettings(msgspec.Struct, forbid_unknown_fields=True):
    """[webhooks]: URLs told of every finished job (besides a job's own callback_url) and the signing secret."""

    urls: list[str] = []
    # Standard Webhooks secret: "whsec_" and base64 of 24 to 64 random bytes. "": one is generated at the first
    # start and kept in the store (`sdcpp-restapi doctor` shows which).
    secret: str = ""
    retry_delays_s: Annotated[list[Annotated[float, Meta(ge=0)]], Meta(max_length=20)] = msgspec.field(
        default_factory=lambda: list(RETRY_DELAYS_S)
    )
    timeout_s: Annotated[float, Meta(gt=0)] = 10.0  # one attempt's time limit (a slower receiver is a failure)


WebhookType = Literal["job.completed", "job.failed", "job.cancelled"]


class WebhookMessage(msgspec.Struct):
    """The body of a delivery: `{"type": "job.completed", "timestamp": "...Z", "data": <the job as GET /queue/{id}
    shows it>}`."""

    type: WebhookType
    timestamp: str
    data: Job


class Delivery(msgspec.Struct, frozen=True):
    """One message to one URL, kept in the store until delivered or given up."""

    delivery_id: str  # the webhook-id header: the same for every attempt, so receivers can drop repeats
    url: str
    body: bytes  # the encoded WebhookMessage, signed as sent
    attempts: int  # attempts made so far
    next_at: float  # unix time of the next attempt
    last_error: str = ""
