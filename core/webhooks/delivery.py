"""Delivering webhooks: each finished job becomes one delivery per target URL (the job's `callback_url`, then
`[webhooks] urls`), committed to the store before the first attempt and removed once a receiver answers 2xx or
the last retry failed. A restart picks up the deliveries still pending. Attempts run off the event loop's
critical path (httpx, async), each under `timeout_s`; redirects are not followed (a 3xx is a failure)."""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Sequence
from typing import Protocol

import anyio
import httpx
import msgspec

from core.errors import BadRequest
from core.events.bus import utc_timestamp
from core.jobs.schemas import TERMINAL, Job
from core.models.downloads import Destinations
from core.request_types import check_http_url
from core.stored_values import ValueStore
from core.webhooks import signing
from core.webhooks.schemas import Delivery, WebhookMessage, WebhookSettings, WebhookType

log = logging.getLogger("sdcpp_restapi")
CALLBACK_FIELD = "callback_url"
SECRET_KEY = "webhook_secret"  # the store's value key of a generated secret
MESSAGE_TYPES: dict[str, WebhookType] = {
    "completed": "job.completed",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
}
assert set(MESSAGE_TYPES) == TERMINAL
_encode = msgspec.json.Encoder().encode


class WebhookStore(Protocol):
    """What webhooks keep: pending deliveries (few rows, read whole at start)."""

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None: ...

    async def pending_deliveries(self) -> list[Delivery]: ...

    async def update_delivery(self, delivery: Delivery) -> None: ...

    async def remove_delivery(self, delivery_id: str) -> None: ...


def callback_of(job: Job) -> str | None:
    """The job's own `callback_url` (a field of the REST requests, so of their params), if it names one."""
    url = getattr(job.params, CALLBACK_FIELD, None)
    return url if isinstance(url, str) and url else None


async def webhook_secret(settings: WebhookSettings, store: ValueStore) -> tuple[str, str]:
    """The signing secret and where it comes from: the config's, else one generated once and kept in the store."""
    if settings.secret:
        signing.secret_key(settings.secret)  # BadSecret stops the start with the reason
        return settings.secret, "the config's [webhooks] secret"
    if stored := await store.value(SECRET_KEY, str):
        return stored, "generated, kept in the store"
    made = signing.new_secret()
    await store.set_value(SECRET_KEY, made)
    return made, "generated, kept in the store"


class Webhooks:
    def __init__(
        self, store: WebhookStore, settings: WebhookSettings, addresses: Destinations, secret: str = ""
    ) -> None:
        self.store, self.settings, self.addresses = store, settings, addresses
        self.key = signing.secret_key(secret or signing.new_secret())
        self._finished: list[Job] = []
        self._pending: dict[str, Delivery] = {}
        self._in_flight: set[str] = set()
        self._wake = anyio.Event()

    async def check_url(self, url: str, field: str = CALLBACK_FIELD) -> None:
        """A 400 naming the field for a URL that is malformed or whose host the address rules refuse."""
        check_http_url(url, field)
        await self.addresses.check(url, field)

    async def check_job(self, job: Job) -> None:
        """The queue's admission check: a job's callback_url must pass the address rules before it is queued."""
        if (url := callback_of(job)) is not None:
            await self.check_url(url)

    def job_finished(self, job: Job) -> None:
        """The queue's finished-job hook (must not block): the job is delivered by `run`."""
        if callback_of(job) is not None or self.settings.urls:
            self._finished.append(job)
            self._wake.set()

    def _deliveries(self, job: Job) -> list[Delivery]:
        body = _encode(WebhookMessage(MESSAGE_TYPES[job.status], utc_timestamp(), job))
        urls = [url for url in [callback_of(job), *self.settings.urls] if url]
        now = time.time()
        return [Delivery(f"msg_{secrets.token_hex(12)}", url, body, 0, now) for url in dict.fromkeys(urls)]

    async def run(self) -> None:
        """Deliver until cancelled: what the store kept from before, then each job that finishes."""
        for url in self.settings.urls:  # tried anyway (each attempt checks again); `doctor` says the same
            try:
                await self.check_url(url, "[webhooks] urls")
            except BadRequest as exc:
                log.warning("webhooks: %s (its deliveries will fail until that changes)", exc.message)
        self._pending = {d.delivery_id: d for d in await self.store.pending_deliveries()}
        if self._pending:
            log.info("webhooks: %d delivery(ies) pending from before the start", len(self._pending))
        async with (
            httpx.AsyncClient(follow_redirects=False, timeout=self.settings.timeout_s) as http,
            anyio.create_task_group() as tasks,
        ):
            while True:
                while self._finished:
                    made = self._deliveries(self._finished.pop(0))
                    try:
                        with anyio.CancelScope(shield=True):
                            await self.store.add_deliveries(made)
                    except Exception:  # a store that fails must not stop the server: deliver from memory
                        log.exception("webhooks: could not keep %d delivery(ies) in the store", len(made))
                    self._pending.update((d.delivery_id, d) for d in made)
                now = time.time()
                waiting = [d for d in self._pending.values() if d.delivery_id not in self._in_flight]
                for delivery in sorted(waiting, key=lambda d: d.next_at):
                    if delivery.next_at <= now:
                        self._in_flight.add(delivery.delivery_id)
                        tasks.start_soon(self._attempt, http, delivery)
                later = [d.next_at for d in waiting if d.next_at > now]
                with anyio.move_on_after(min(later) - now if later else math.inf):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def _attempt(self, http: httpx.AsyncClient, delivery: Delivery) -> None:
        error = ""
        try:
            await self.check_url(delivery.url, "url")  # again at each attempt: the name may resolve anew
            timestamp = int(time.time())
            headers = signing.headers(self.key, delivery.delivery_id, timestamp, delivery.body)
            response = await http.post(delivery.url, content=delivery.body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except BadRequest as exc:
            error = exc.message
        except Exception as exc:  # httpx's errors and anything else a receiver can provoke: a failed attempt
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            with anyio.CancelScope(shield=True):
                await self._record(delivery, error)
        except Exception:  # the store failed: the delivery stays pending in memory
            log.exception("webhooks: could not record attempt of %s", delivery.delivery_id)
        finally:
            self._in_flight.discard(delivery.delivery_id)
            self._wake.set()

    async def _record(self, delivery: Delivery, error: str) -> None:
        attempts = delivery.attempts + 1
        delays = self.settings.retry_delays_s
        if not error or attempts > len(delays):
            if error:
                log.warning(
                    "webhook %s to %s given up after %d attempts: %s",
                    delivery.delivery_id,
                    delivery.url,
                    attempts,
                    error,
                )
            self._pending.pop(delivery.delivery_id, None)
            await self.store.remove_delivery(delivery.delivery_id)
            return
        log.info(
            "webhook %s to %s failed (attempt %d: %s); next in %g s",
            delivery.delivery_id,
            delivery.url,
            attempts,
            error,
            delays[attempts - 1],
        )
        again = msgspec.structs.replace(
            delivery, attempts=attempts, next_at=time.time() + delays[attempts - 1], last_error=error
        )
        self._pending[again.delivery_id] = again  # memory first: a failing store never makes it retry at once
        await self.store.update_delivery(again)
