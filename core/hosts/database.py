"""What the hosts share in PostgreSQL besides Procrastinate's own tables: our schema `sdcpp_hosts` with the
outcomes of jobs (written by the worker host before its task returns, so an outcome is never lost while no API
host listens), previews (too big for a NOTIFY payload) and the host registry; and the NOTIFY channel that carries
`Notice`s. One autocommit connection per `Link`, opened again after the database went away."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio
import msgspec
import psycopg
from procrastinate.schema import SchemaManager
from psycopg.types.json import Jsonb

from core.errors import ServiceError
from core.hosts.schemas import CHANNEL, HostRow, Notice, Outcome
from core.workers.schemas import WorkerInfo

log = logging.getLogger("sdcpp_restapi")
T = TypeVar("T")

# Held while one host creates the schemas: hosts starting together do not race.
SCHEMA_LOCK = 0x5DC99_0001
STALLED_LOCK = 0x5DC99_0002  # one API host at a time re-queues the jobs of lost worker hosts

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS sdcpp_hosts;
CREATE TABLE IF NOT EXISTS sdcpp_hosts.outcomes (
    job_id text NOT NULL,
    attempt integer NOT NULL,
    status text NOT NULL,
    outputs jsonb NOT NULL DEFAULT '[]',
    error text,
    worker text,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS sdcpp_hosts.previews (
    id bigserial PRIMARY KEY,
    job_id text NOT NULL,
    event jsonb NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS sdcpp_hosts.hosts (
    name text PRIMARY KEY,
    state text NOT NULL,
    workers jsonb NOT NULL,
    models jsonb NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
"""

_notice = msgspec.json.Decoder(Notice)
_workers = msgspec.json.Decoder(list[WorkerInfo])


class DatabaseDown(ServiceError):
    status = 503


def decode_notice(payload: str) -> Notice | None:
    try:
        notice: Notice = _notice.decode(payload)
        return notice
    except msgspec.ValidationError:
        return None


class Link:
    """One autocommit connection to the shared database, opened on first use and again after a failure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = anyio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
        return self._conn

    async def run(self, work: Callable[[psycopg.AsyncConnection[tuple[object, ...]]], Awaitable[T]]) -> T:
        async with self._lock:
            try:
                return await work(await self._connection())
            except psycopg.OperationalError as exc:
                if self._conn is not None:
                    await self._conn.close()
                self._conn = None
                raise DatabaseDown(f"the shared database is unreachable: {exc}".strip()) from None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------------------------------ writes

    async def prepare(self) -> None:
        """Our schema and Procrastinate's, created by the first host that finds them missing."""

        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            await conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                await conn.execute(SCHEMA)
                found = await (await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")).fetchone()
                if not (found and found[0]):
                    await conn.execute(SchemaManager.get_schema())
                    log.info("created Procrastinate's tables in the shared database")
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))

        await self.run(work)

    async def notify(self, notice: Notice) -> None:
        payload = msgspec.json.encode(notice).decode()

        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

        await self.run(work)

    async def write_outcome(self, outcome: Outcome) -> None:
        """Kept once per attempt: a second write of the same attempt changes nothing."""

        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            await conn.execute(
                "INSERT INTO sdcpp_hosts.outcomes (job_id, attempt, status, outputs, error, worker) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    outcome.job_id,
                    outcome.attempt,
                    outcome.status,
                    Jsonb(outcome.outputs),
                    outcome.error,
                    outcome.worker,
                ),
            )

        await self.run(work)

    async def post_preview(self, job_id: str, event: bytes) -> int:
        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
            row = await (
                await conn.execute(
                    "INSERT INTO sdcpp_hosts.previews (job_id, event) VALUES (%s, %s::jsonb) RETURNING id",
                    (job_id, event.decode()),
                )
            ).fetchone()
            assert row is not None
            # previews are read at once by the listening API hosts: older ones are of no use
            await conn.execute("DELETE FROM sdcpp_hosts.previews WHERE written_at < now() - interval '5 minutes'")
            return int(str(row[0]))

        return await self.run(work)

    async def beat(self, host: HostRow) -> None:
        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            await conn.execute(
                "INSERT INTO sdcpp_hosts.hosts (name, state, workers, models, heartbeat_at) "
                "VALUES (%s, %s, %s::jsonb, %s, now()) ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, "
                "workers = EXCLUDED.workers, models = EXCLUDED.models, heartbeat_at = now()",
                (host.name, host.state, msgspec.json.encode(host.workers).decode(), Jsonb(host.models)),
            )

        await self.run(work)

    # ------------------------------------------------------------------------------------------- reads

    async def outcome(self, job_id: str, attempt: int) -> Outcome | None:
        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> Outcome | None:
            row = await (
                await conn.execute(
                    "SELECT status, outputs, error, worker FROM sdcpp_hosts.outcomes WHERE job_id = %s AND attempt = %s",
                    (job_id, attempt),
                )
            ).fetchone()
            if row is None:
                return None
            return msgspec.convert(
                {
                    "job_id": job_id,
                    "attempt": attempt,
                    "status": row[0],
                    "outputs": row[1],
                    "error": row[2],
                    "worker": row[3],
                },
                Outcome,
            )

        return await self.run(work)

    async def preview(self, row: int) -> bytes | None:
        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> bytes | None:
            found = await (
                await conn.execute("SELECT event::text FROM sdcpp_hosts.previews WHERE id = %s", (row,))
            ).fetchone()
            return str(found[0]).encode() if found else None

        return await self.run(work)

    async def hosts(self) -> list[HostRow]:
        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[HostRow]:
            rows = await (
                await conn.execute(
                    "SELECT name, state, workers::text, models, extract(epoch FROM now() - heartbeat_at) "
                    "FROM sdcpp_hosts.hosts ORDER BY name"
                )
            ).fetchall()
            return [
                HostRow(str(name), str(state), _workers.decode(str(workers)), list(models), float(str(age)))  # type: ignore[call-overload]
                for name, state, workers, models, age in rows
            ]

        return await self.run(work)

    async def procrastinate_job(self, job_id: str) -> tuple[int, str, int] | None:
        """The Procrastinate job of our job (id, status, its current attempt: 0 for the first), the newest if
        several."""

        async def work(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> tuple[int, str, int] | None:
            row = await (
                await conn.execute(
                    "SELECT id, status::text, attempts FROM procrastinate_jobs WHERE args->>'job_id' = %s "
                    "ORDER BY id DESC LIMIT 1",
                    (job_id,),
                )
            ).fetchone()
            if row is None:
                return None
            status, attempts = str(row[1]), int(str(row[2]))
            # Procrastinate counts an attempt when it ends (finished or retried): a running or waiting job is at
            # attempt `attempts`, an ended one was at `attempts - 1`
            return int(str(row[0])), status, attempts if status in ("todo", "doing") else attempts - 1

        return await self.run(work)


async def listen(url: str) -> AsyncIterator[Notice]:
    """The notices on our channel, from a connection of its own (raises psycopg.OperationalError when the database
    goes away: the caller reconnects)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        while True:
            async for message in conn.notifies(timeout=5.0):
                if (notice := decode_notice(message.payload)) is not None:
                    yield notice
            await conn.execute("SELECT 1")  # a database that went away raises here within 5 s
