"""`Store` on a PostgreSQL database (`[store] url`, SDCPP_RESTAPI_STORE_URL), through psycopg 3.

The async methods use psycopg's async connection pool (the event loop never blocks); each write is one statement
in autocommit or one transaction, committed (synchronous_commit, PostgreSQL's default) before the call returns,
so a 202 sent after `add_job` survives a SIGKILL of the server. The runners' `ChildBook` calls are synchronous
(they run in worker threads): they use the store's own connection, which also holds the server lock.

Our tables live in the schema `sdcpp_restapi` (every connection's search_path), with a version table and a list
of migrations run in one transaction under an advisory lock (several hosts may start at once). A schema written by
a newer version, or an `sdcpp_restapi` schema that is not ours, stops the server (StoreUnusable) and is never
changed.

The database unreachable: a call that needs it waits at most `POOL_WAIT_S` (connections are made with a
`CONNECT_TIMEOUT_S` timeout) and raises `StoreUnreachable` (a 503 with Retry-After); for `DOWN_HOLD_S` after that
the calls fail at once; the pool makes new connections by itself once the database is back. A job's status change that cannot be written meanwhile is not
lost: `save_job` keeps the job's newest state and writes it when the database answers again (retried every
`RETRY_UNSAVED_S`, and before any read of the jobs), so the queue goes on and the history catches up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from core.errors import StoreUnreachable
from core.jobs.idempotency import RememberedAnswer
from core.jobs.records import JobCodec, JobRecord
from core.jobs.schemas import DEFAULT_FINISHED_LISTED, Job, JobStatus, QueueQuery
from core.models.hashing import CachedHash
from core.store import StoreUnusable
from core.store.sql import ACTIVE_STATUSES, TERMINAL_STATUSES, job_filters, listing_sql, marks, postgres_marks
from core.webhooks.schemas import Delivery

T = TypeVar("T")
log = logging.getLogger("sdcpp_restapi")

SCHEMA = "sdcpp_restapi"
WRITTEN_BY = "sdcpp-restapi"  # the version table's mark: a schema of this name without it is not ours
CONNECT_TIMEOUT_S = 3
POOL_WAIT_S = 5.0  # the longest a request waits for a connection before its 503
POOL_MAX = 10
RETRY_AFTER_S = 5
RETRY_UNSAVED_S = 1.0
DOWN_HOLD_S = 1.0  # after a call found the database unreachable, the next ones fail at once for this long
# Advisory lock keys (bigint, per database): the migrations, and the one server per database (see claim_server).
MIGRATION_LOCK = 0x5DC9_0001
SERVER_LOCK = 0x5DC9_0002

# MIGRATIONS[i] brings the schema from version i to i + 1. Append only; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        prompt TEXT NOT NULL DEFAULT '',
        job BYTEA NOT NULL,
        spec BYTEA
    );
    CREATE INDEX jobs_by_status ON jobs (status, seq);
    CREATE INDEX jobs_by_type ON jobs (type, seq);
    CREATE TABLE state_values (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
    CREATE TABLE model_hashes (path TEXT PRIMARY KEY, size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL,
                               sha256 TEXT NOT NULL);
    CREATE TABLE history (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, feature TEXT NOT NULL,
                          entry_id TEXT, entry BYTEA NOT NULL);
    CREATE INDEX history_by_feature ON history (feature, seq);
    CREATE TABLE child_processes (host TEXT NOT NULL, pid INTEGER NOT NULL, exe TEXT NOT NULL,
                                  PRIMARY KEY (host, pid));
    CREATE TABLE idempotent_answers (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, answer BYTEA NOT NULL,
                                     created_at DOUBLE PRECISION NOT NULL);
    CREATE INDEX idempotent_answers_by_age ON idempotent_answers (created_at);
    CREATE TABLE webhook_deliveries (delivery_id TEXT PRIMARY KEY, url TEXT NOT NULL, body BYTEA NOT NULL,
                                     attempts INTEGER NOT NULL, next_at DOUBLE PRECISION NOT NULL,
                                     last_error TEXT NOT NULL DEFAULT '');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_encode = msgspec.json.Encoder().encode


def _sql(text: str) -> str:
    """Our own statements (built from constants and placeholders only, never from values) in psycopg's marks."""
    return postgres_marks(text)


def shown_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


def connection_options(url: str, read_only: bool = False) -> dict[str, Any]:
    """How every connection of ours is made: bounded connect time, our schema first, named after this process;
    `read_only` for doctor (PostgreSQL then refuses any write)."""
    name = f"sdcpp-restapi {socket.gethostname()} pid {os.getpid()}"[:63]
    options = f"-c search_path={SCHEMA}" + (" -c default_transaction_read_only=on" if read_only else "")
    return {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": name, "options": options, "autocommit": True}


class PostgresStore:
    """`jobs` reads the stored jobs and specs back: the job types are composed by the service, not known here.
    `host` keys this host's child processes (hosts share the database)."""

    def __init__(self, url: str, jobs: JobCodec, host: str | None = None, claim: bool = True) -> None:
        self.url = url
        self.jobs = jobs
        self.host = host or socket.gethostname()
        self._sync_lock = threading.Lock()
        self._conn = open_checked(url)
        try:
            if claim:
                claim_server(self._conn, url)
        except BaseException:
            self._conn.close()
            raise
        self._claim = claim
        self._pool = AsyncConnectionPool(
            url,
            kwargs=connection_options(url),
            min_size=1,
            max_size=POOL_MAX,
            timeout=POOL_WAIT_S,
            reconnect_timeout=10.0,  # then give up; the next request that needs a connection tries again
            open=False,
        )
        self._opened = False
        # job id -> (save number, record) not yet written (the database down, or a write under way)
        self._unsaved: dict[str, tuple[int, JobRecord]] = {}
        self._saves = 0
        self._save_lock: asyncio.Lock | None = None
        self._retrying: asyncio.Task[None] | None = None
        self._down_until = 0.0  # monotonic time until which calls fail at once: the database just did not answer
        self._down = StoreUnreachable("")
        self._reclaiming: asyncio.Task[None] | None = None

    def close(self) -> None:
        """Close the synchronous connection (releasing the server lock). The async pool closes in `aclose`."""
        with self._sync_lock:
            self._conn.close()

    async def aclose(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
        if self._reclaiming is not None:
            await self._reclaiming
        if self._unsaved:
            try:
                await self._flush_unsaved()
            except StoreUnreachable as exc:
                log.error("store: %d job state(s) could not be written before the stop: %s", len(self._unsaved), exc)
        if self._opened:
            await self._pool.close()
        await asyncio.to_thread(self.close)

    # -------------------------------------------------------------------------------------- plumbing

    async def _with(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`work` on a pooled connection. A connection the database dropped (a restart) shows only when used, so a
        failure is tried once more on a fresh connection (the statements here may run twice: inserts ignore or
        replace a row already there, updates and deletes do the same twice; only a history entry whose commit
        was cut off could be appended twice); the database still unreachable is
        StoreUnreachable (a 503), never a hang or a 500. No check before each use: that would cost a round trip."""
        if time.monotonic() < self._down_until:  # it just failed: answer at once instead of waiting again
            raise StoreUnreachable(self._down.message, self._down.headers)
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)
        for attempt in (1, 2):
            try:
                async with self._pool.connection() as conn:
                    result = await work(conn)
                if self._down_until:  # back after an outage: the server lock went with the old connection
                    self._down_until = 0.0
                    self._reclaiming = asyncio.get_running_loop().create_task(asyncio.to_thread(self._reclaim))
                return result
            except psycopg.OperationalError as exc:
                if attempt == 1:
                    continue
                raise self._unreachable(exc) from None
            except (PoolTimeout, PoolClosed) as exc:
                raise self._unreachable(exc) from None
        raise AssertionError("unreachable")

    def _unreachable(self, exc: Exception) -> StoreUnreachable:
        """The error to raise, remembered for the calls of the next `DOWN_HOLD_S` (they fail at once)."""
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
        self._down = StoreUnreachable(
            f"the job store (PostgreSQL at {shown_url(self.url)}) is unreachable ({type(exc).__name__}: "
            f"{first_line}); try again shortly",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
        self._down_until = time.monotonic() + DOWN_HOLD_S
        return self._down

    async def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        async def rows(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            return await (await conn.execute(_sql(sql), args)).fetchall()

        return await self._with(rows)

    async def _one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...] | None:
        async def one(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...] | None:
            return await (await conn.execute(_sql(sql), args)).fetchone()

        return await self._with(one)

    async def _execute(self, sql: str, args: Sequence[object] = ()) -> int:
        async def execute(conn: psycopg.AsyncConnection[Any]) -> int:
            return (await conn.execute(_sql(sql), args)).rowcount

        return await self._with(execute)

    def _reclaim(self) -> None:
        """Make the store's own connection again and take the server lock again (after a database restart)."""
        self._child_book("take the server lock again", lambda db: db.execute("SELECT 1"), None)

    def _sync(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run on the store's own connection, making it again (and taking the server lock again) if it broke."""
        with self._sync_lock:
            if self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(self.url, **connection_options(self.url))
                if self._claim:
                    claim_server(self._conn, self.url)
            return work(self._conn)

    # ------------------------------------------------------------------------------------------ jobs

    @staticmethod
    def _job_row(record: JobRecord) -> tuple[object, ...]:
        job = record.job
        return (job.job_id, job.type, job.status, job.created_at, record.prompt, _encode(job), _encode(record.spec))

    async def add_job(self, record: JobRecord) -> None:
        await self._execute(
            "INSERT INTO jobs (job_id, type, status, created_at, prompt, job, spec) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (job_id) DO NOTHING",
            self._job_row(record),
        )

    async def save_job(self, record: JobRecord) -> None:
        """Write the job's new state; with the database unreachable, keep it and write it once it is back (the
        queue's status changes never fail for the store's sake)."""
        self._saves += 1
        self._unsaved[record.job.job_id] = (self._saves, record)
        try:
            await self._flush_unsaved()
        except StoreUnreachable as exc:
            log.warning("store: job %s's state kept until the database answers: %s", record.job.job_id, exc)
            if self._retrying is None or self._retrying.done():
                self._retrying = asyncio.get_running_loop().create_task(self._retry_unsaved())

    async def _flush_unsaved(self) -> None:
        """Write every kept job state in one transaction (one writer at a time: a newer state is never
        overwritten by an older one)."""
        if self._save_lock is None:
            self._save_lock = asyncio.Lock()
        async with self._save_lock:
            if not self._unsaved:
                return
            pending = dict(self._unsaved)
            rows = [  # encoded now: the newest state of each record (the queue changes the same record object)
                (r.job.status, _encode(r.job), _encode(r.spec), job_id) for job_id, (_, r) in pending.items()
            ]
            update_sql = _sql("UPDATE jobs SET status = ?, job = ?, spec = ? WHERE job_id = ?")

            async def update(conn: psycopg.AsyncConnection[Any]) -> None:
                if len(rows) == 1:  # the usual case: one autocommitted statement, one round trip
                    await conn.execute(update_sql, rows[0])
                    return
                async with conn.transaction(), conn.cursor() as cursor:
                    await cursor.executemany(update_sql, rows)

            await self._with(update)
            for job_id, (save, _) in pending.items():
                if self._unsaved.get(job_id, (None, None))[0] == save:  # not saved again meanwhile
                    del self._unsaved[job_id]

    async def _retry_unsaved(self) -> None:
        while self._unsaved:
            await asyncio.sleep(RETRY_UNSAVED_S)
            try:
                await self._flush_unsaved()
            except StoreUnreachable:
                continue
            log.info("store: the database answers again; the kept job states are written")

    async def _caught_up(self) -> None:
        """Reads of the jobs see the kept states: written first (or StoreUnreachable)."""
        if self._unsaved:
            await self._flush_unsaved()

    def _record(self, row: tuple[Any, ...]) -> JobRecord:
        spec = row[1]
        return JobRecord(self.jobs.job(row[0]), self.jobs.spec(spec) if spec is not None and spec != b"null" else None)

    async def job(self, job_id: str) -> JobRecord | None:
        await self._caught_up()
        row = await self._one("SELECT job, spec FROM jobs WHERE job_id = ?", (job_id,))
        return self._record(row) if row else None

    async def active_jobs(self) -> list[JobRecord]:
        await self._caught_up()
        rows = await self._rows(
            f"SELECT job, spec FROM jobs WHERE status IN ({marks(ACTIVE_STATUSES)}) ORDER BY seq", ACTIVE_STATUSES
        )
        return [self._record(row) for row in rows]

    async def list_jobs(self, query: QueueQuery) -> tuple[list[Job], int | None]:
        await self._caught_up()
        where, args = job_filters(query, "ILIKE")
        if query.limit is None:
            sql = listing_sql(where, paged=False)
            values: tuple[object, ...] = (*args, *ACTIVE_STATUSES, *args, *TERMINAL_STATUSES, DEFAULT_FINISHED_LISTED)
        else:
            sql, values = listing_sql(where, paged=True), (*args, query.limit or None, query.offset)

        async def listing(conn: psycopg.AsyncConnection[Any]) -> tuple[list[tuple[Any, ...]], int | None]:
            rows = await (await conn.execute(_sql(sql), values)).fetchall()
            if not args:  # counting scans the matches: only where a filter makes it differ from the caller's total
                return rows, None
            counted = await (await conn.execute(_sql(f"SELECT count(*) FROM jobs WHERE {where}"), args)).fetchone()
            return rows, int(counted[0]) if counted else 0

        rows, matched = await self._with(listing)
        rows.sort()
        return [self.jobs.job(job) for _, job in rows], matched

    async def status_counts(self) -> dict[JobStatus, int]:
        await self._caught_up()
        return {
            status: int(count)
            for status, count in await self._rows("SELECT status, count(*) FROM jobs GROUP BY status")
        }

    async def prune_finished(self, keep: int, created_before: str | None) -> list[str]:
        """As SQLite's; with the database unreachable nothing is pruned now (the next finished job prunes)."""
        finished = f"status IN ({marks(TERMINAL_STATUSES)})"
        try:
            await self._caught_up()

            async def prune(conn: psycopg.AsyncConnection[Any]) -> list[str]:
                async with conn.transaction():
                    doomed: list[str] = []
                    if keep > 0:
                        boundary = await (
                            await conn.execute(
                                _sql(f"SELECT seq FROM jobs WHERE {finished} ORDER BY seq DESC LIMIT 1 OFFSET ?"),
                                (*TERMINAL_STATUSES, keep - 1),
                            )
                        ).fetchone()
                        if boundary:
                            doomed += [
                                row[0]
                                for row in await (
                                    await conn.execute(
                                        _sql(f"SELECT job_id FROM jobs WHERE {finished} AND seq < ?"),
                                        (*TERMINAL_STATUSES, boundary[0]),
                                    )
                                ).fetchall()
                            ]
                    if created_before:
                        doomed += [
                            row[0]
                            for row in await (
                                await conn.execute(
                                    _sql(f"SELECT job_id FROM jobs WHERE {finished} AND created_at < ?"),
                                    (*TERMINAL_STATUSES, created_before),
                                )
                            ).fetchall()
                        ]
                    doomed = sorted(set(doomed))
                    await conn.execute("DELETE FROM jobs WHERE job_id = ANY(%s)", (doomed,))
                    return doomed

            return await self._with(prune)
        except StoreUnreachable as exc:
            log.warning("store: retention postponed: %s", exc)
            return []

    # --------------------------------------------------------------------------------- state values

    async def set_value(self, key: str, value: object | None) -> None:
        if value is None:
            await self._execute("DELETE FROM state_values WHERE key = ?", (key,))
        else:
            await self._execute(
                "INSERT INTO state_values (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, _encode(value)),
            )

    async def value(self, key: str, type_: type[T]) -> T | None:
        row = await self._one("SELECT value FROM state_values WHERE key = ?", (key,))
        if row is None:
            return None
        try:
            return msgspec.json.decode(row[0], type=type_)
        except msgspec.ValidationError as exc:
            raise StoreUnusable(
                f"{shown_url(self.url)}: stored value '{key}' does not fit this version ({exc}); "
                "the database was left untouched"
            ) from None

    # ------------------------------------------------------------------------------ idempotent answers

    async def remembered_answer(self, key: str) -> RememberedAnswer | None:
        row = await self._one("SELECT fingerprint, answer, created_at FROM idempotent_answers WHERE key = ?", (key,))
        return None if row is None else RememberedAnswer(row[0], bytes(row[1]), row[2])

    async def remember_answer(self, key: str, answer: RememberedAnswer) -> None:
        await self._execute(
            "INSERT INTO idempotent_answers (key, fingerprint, answer, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, answer = excluded.answer, "
            "created_at = excluded.created_at",
            (key, answer.fingerprint, answer.answer, answer.created_at),
        )

    async def forget_answers_before(self, created_before: float) -> None:
        await self._execute("DELETE FROM idempotent_answers WHERE created_at < ?", (created_before,))

    # ------------------------------------------------------------------------------- webhook deliveries

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        rows = [(d.delivery_id, d.url, d.body, d.attempts, d.next_at, d.last_error) for d in deliveries]

        async def add(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO webhook_deliveries (delivery_id, url, body, attempts, next_at, last_error) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (delivery_id) DO UPDATE SET url = excluded.url, "
                    "body = excluded.body, attempts = excluded.attempts, next_at = excluded.next_at, "
                    "last_error = excluded.last_error",
                    rows,
                )

        await self._with(add)

    async def pending_deliveries(self) -> list[Delivery]:
        rows = await self._rows(
            "SELECT delivery_id, url, body, attempts, next_at, last_error FROM webhook_deliveries ORDER BY next_at"
        )
        return [Delivery(row[0], row[1], bytes(row[2]), row[3], row[4], row[5]) for row in rows]

    async def update_delivery(self, delivery: Delivery) -> None:
        await self.add_deliveries([delivery])

    async def remove_delivery(self, delivery_id: str) -> None:
        await self._execute("DELETE FROM webhook_deliveries WHERE delivery_id = ?", (delivery_id,))

    # --------------------------------------------------------------------------------------- hashes

    async def set_hash(self, path: str, entry: CachedHash) -> None:
        await self._execute(
            "INSERT INTO model_hashes (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?) ON CONFLICT (path) "
            "DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256",
            (path, entry.size, entry.mtime_ns, entry.sha256),
        )

    async def hashes(self) -> dict[str, CachedHash]:
        rows = await self._rows("SELECT path, size, mtime_ns, sha256 FROM model_hashes")
        return {path: CachedHash(size, mtime_ns, sha256) for path, size, mtime_ns, sha256 in rows}

    # ------------------------------------------------------------------------------------ histories

    async def history_add(self, feature: str, entries: Sequence[tuple[str | None, object]], keep: int) -> None:
        rows = [(feature, entry_id, _encode(entry)) for entry_id, entry in entries]

        async def add(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                async with conn.cursor() as cursor:
                    await cursor.executemany(
                        _sql("INSERT INTO history (feature, entry_id, entry) VALUES (?, ?, ?)"), rows
                    )
                await conn.execute(
                    _sql(
                        "DELETE FROM history WHERE feature = ? AND seq NOT IN "
                        "(SELECT seq FROM history WHERE feature = ? ORDER BY seq DESC LIMIT ?)"
                    ),
                    (feature, feature, keep),
                )

        await self._with(add)

    async def history_page(
        self, feature: str, type_: type[T], limit: int | None, offset: int = 0, newest_first: bool = True
    ) -> list[T]:
        order = "DESC" if newest_first else "ASC"
        rows = await self._rows(
            f"SELECT entry FROM history WHERE feature = ? ORDER BY seq {order} LIMIT ? OFFSET ?",
            (feature, limit, offset),
        )
        decode = msgspec.json.Decoder(type_).decode
        return [decode(row[0]) for row in rows]

    async def history_entry(self, feature: str, entry_id: str, type_: type[T]) -> T | None:
        row = await self._one("SELECT entry FROM history WHERE feature = ? AND entry_id = ?", (feature, entry_id))
        return msgspec.json.decode(row[0], type=type_) if row else None

    async def history_delete(self, feature: str, entry_id: str | None = None) -> int:
        if entry_id is None:
            return await self._execute("DELETE FROM history WHERE feature = ?", (feature,))
        return await self._execute("DELETE FROM history WHERE feature = ? AND entry_id = ?", (feature, entry_id))

    async def history_count(self, feature: str) -> int:
        row = await self._one("SELECT count(*) FROM history WHERE feature = ?", (feature,))
        return int(row[0]) if row else 0

    # -------------------------------------------------------------------------------- child processes
    # A hint for cleaning up after a killed server (runners/process.py), keyed by host: with the database
    # unreachable a child goes unrecorded (logged) rather than failing its job.

    def _child_book(self, what: str, work: Callable[[psycopg.Connection[Any]], T], otherwise: T) -> T:
        for attempt in (1, 2):  # a connection the database dropped (a restart) is found broken on use: once more
            try:
                return self._sync(work)
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    log.warning("store: could not %s (database unreachable: %s)", what, exc)
            except StoreUnusable as exc:  # the server lock, lost with the connection, is held by another server now
                log.error("store: could not %s: %s", what, exc)
                break
        return otherwise

    def record_child(self, pid: int, exe: str) -> None:
        self._child_book(
            f"record child process {pid}",
            lambda db: db.execute(
                "INSERT INTO child_processes (host, pid, exe) VALUES (%s, %s, %s) "
                "ON CONFLICT (host, pid) DO UPDATE SET exe = excluded.exe",
                (self.host, pid, exe),
            ),
            None,
        )

    def forget_child(self, pid: int) -> None:
        self._child_book(
            f"forget child process {pid}",
            lambda db: db.execute("DELETE FROM child_processes WHERE host = %s AND pid = %s", (self.host, pid)),
            None,
        )

    def recorded_children(self) -> dict[int, str]:
        rows: list[tuple[Any, ...]] = self._child_book(
            "read the recorded child processes",
            lambda db: db.execute("SELECT pid, exe FROM child_processes WHERE host = %s", (self.host,)).fetchall(),
            [],
        )
        return {int(pid): str(exe) for pid, exe in rows}

    def forget_all_children(self) -> None:
        self._child_book(
            "forget the recorded child processes",
            lambda db: db.execute("DELETE FROM child_processes WHERE host = %s", (self.host,)),
            None,
        )


# ------------------------------------------------------------------------------------------ opening


def _refuse(url: str, why: str) -> StoreUnusable:
    return StoreUnusable(
        f"cannot use the PostgreSQL store {shown_url(url)}: {why}. The database was left untouched: use another "
        f"database (or drop the schema {SCHEMA} if you mean to start afresh), or run the version that wrote it."
    )


def connect(url: str, read_only: bool = False) -> psycopg.Connection[Any]:
    """A connection of ours, or StoreUnusable saying why there is none (start-up: the server stops)."""
    try:
        return psycopg.connect(url, **connection_options(url, read_only))
    except psycopg.Error as exc:
        raise StoreUnusable(
            f"cannot reach the PostgreSQL store {shown_url(url)}: {str(exc).strip()}. Check that the server runs "
            "and the URL ([store] url or SDCPP_RESTAPI_STORE_URL) names a database this user may use"
        ) from None


def stored_version(conn: psycopg.Connection[Any], url: str) -> int:
    """The schema version the database holds (0: no schema of ours yet, or an empty one made for us); refuses an
    `sdcpp_restapi` schema that is not ours or that a newer version wrote. Reads only."""
    tables = {
        row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (SCHEMA,)).fetchall()
    }
    if not tables:
        return 0
    foreign = _refuse(url, f"its schema {SCHEMA} exists but was not made by sdcpp-restapi")
    if "schema_version" not in tables:
        raise foreign
    try:
        with conn.transaction():  # a savepoint: a foreign table of that name is an error to catch, not to abort
            rows = conn.execute("SELECT version, written_by FROM schema_version").fetchall()
    except psycopg.errors.UndefinedColumn:
        raise foreign from None
    if len(rows) != 1 or rows[0][1] != WRITTEN_BY or not isinstance(rows[0][0], int):
        raise foreign
    version = int(rows[0][0])
    if version > SCHEMA_VERSION:
        raise _refuse(
            url,
            f"it was written by a newer version of sdcpp-restapi (schema {version}; this version knows up to "
            f"{SCHEMA_VERSION})",
        )
    return version


def open_checked(url: str) -> psycopg.Connection[Any]:
    """Connect, check and migrate (one transaction under the migration lock: hosts starting together migrate
    once). Blocking: start-up only."""
    conn = connect(url)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            version = stored_version(conn, url)
            if version < SCHEMA_VERSION:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                for script in MIGRATIONS[version:]:
                    for statement in _statements(script):
                        conn.execute(statement)
                if version == 0:
                    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, written_by TEXT NOT NULL)")
                    conn.execute("INSERT INTO schema_version VALUES (%s, %s)", (SCHEMA_VERSION, WRITTEN_BY))
                else:
                    conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
    except psycopg.OperationalError as exc:
        conn.close()
        raise StoreUnusable(f"the PostgreSQL store {shown_url(url)} went away while opening it: {exc}") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        conn.close()
        raise _refuse(url, f"this user may not create or read its schema ({str(exc).strip()})") from None
    except BaseException:
        conn.close()
        raise
    return conn


class Peek(msgspec.Struct, frozen=True):
    """What doctor learns from a database without changing it."""

    version: int  # 0: no schema of ours yet (the first start makes it)
    server: str | None  # the server that holds the one-server lock, if one runs
    value: bytes | None = None  # the state value asked for


def peek(url: str, value_key: str | None = None) -> Peek:
    """Connect read-only, read the schema version, who holds the server lock and optionally one state value;
    StoreUnusable when the database cannot be reached or used. Never migrates, never locks."""
    with connect(url, read_only=True) as conn:
        version = stored_version(conn, url)
        holder = conn.execute(_HOLDER, (SERVER_LOCK,)).fetchone()
        value = None
        if value_key is not None and version:
            row = conn.execute("SELECT value FROM state_values WHERE key = %s", (value_key,)).fetchone()
            value = bytes(row[0]) if row else None
    return Peek(version, _who(holder) if holder else None, value)


_HOLDER = (
    "SELECT a.application_name, a.client_addr::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND (l.classid::bigint << 32) + l.objid::bigint = %s"
)


def _who(holder: tuple[Any, ...]) -> str:
    return f"{holder[0] or 'unnamed'}{f' from {holder[1]}' if holder[1] else ''}"


def claim_server(conn: psycopg.Connection[Any], url: str) -> None:
    """One server per database, for now: a session advisory lock, held by the store's own connection while the
    store is open and dropped by PostgreSQL when that connection ends (a SIGKILLed server leaves no stale lock).
    The one place to relax when several API hosts share the database (the queue between hosts, issue 21 part 2)."""
    taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (SERVER_LOCK,)).fetchone()
    if taken and taken[0]:
        return
    holder = conn.execute(_HOLDER, (SERVER_LOCK,)).fetchone()
    who = _who(holder) if holder else "unknown"
    raise StoreUnusable(
        f"the PostgreSQL store {shown_url(url)} is in use by another sdcpp-restapi server ({who}): one server per "
        "database for now; stop it, or give this one another database"
    )


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
