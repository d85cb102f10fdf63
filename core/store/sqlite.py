"""`Store` on one SQLite file (standard library `sqlite3`, WAL mode, synchronous=FULL: a commit is on disk
before the call returns, so a 202 sent after `add_job` survives SIGKILL and power loss).

One connection, serialised by a lock, used from worker threads: every async method runs off the event loop.
One server per store: an exclusive `flock` on `<store>.lock`, held while the store is open, makes a second server
on the same output folder stop with a clear message instead of running the same pending jobs. The kernel drops the
lock when its process dies (SIGKILL included), so a killed server never leaves a stale lock behind.
The schema has a version table and a list of migrations; a file that is not such a database, is damaged, or
was written by a newer version is refused (StoreUnusable) and never written to.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import msgspec

from core.jobs.idempotency import RememberedAnswer
from core.jobs.records import JobCodec, JobRecord
from core.jobs.schemas import DEFAULT_FINISHED_LISTED, Job, JobStatus, QueueQuery
from core.models.hashing import CachedHash
from core.store import StoreUnusable
from core.store.sql import ACTIVE_STATUSES, TERMINAL_STATUSES, job_filters, listing_sql, marks
from core.webhooks.schemas import Delivery

T = TypeVar("T")
STORE_FILE = ".sdcpp-restapi.sqlite3"  # dot-file: never listed or served by the output browser

# MIGRATIONS[i] brings the schema from version i to i + 1. Append only; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        prompt TEXT NOT NULL DEFAULT '',
        job BLOB NOT NULL,
        spec BLOB
    );
    CREATE INDEX jobs_by_status ON jobs (status, seq);
    CREATE INDEX jobs_by_type ON jobs (type, seq);
    CREATE TABLE state_values (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE model_hashes (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                               sha256 TEXT NOT NULL);
    CREATE TABLE history (seq INTEGER PRIMARY KEY AUTOINCREMENT, feature TEXT NOT NULL, entry_id TEXT,
                          entry BLOB NOT NULL);
    CREATE INDEX history_by_feature ON history (feature, seq);
    CREATE TABLE child_processes (pid INTEGER PRIMARY KEY, exe TEXT NOT NULL);
    """,
    """
    CREATE TABLE idempotent_answers (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, answer BLOB NOT NULL,
                                     created_at REAL NOT NULL);
    CREATE INDEX idempotent_answers_by_age ON idempotent_answers (created_at);
    """,
    """
    CREATE TABLE webhook_deliveries (delivery_id TEXT PRIMARY KEY, url TEXT NOT NULL, body BLOB NOT NULL,
                                     attempts INTEGER NOT NULL, next_at REAL NOT NULL,
                                     last_error TEXT NOT NULL DEFAULT '');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_encode = msgspec.json.Encoder().encode
_ACTIVE, _TERMINAL, _marks = ACTIVE_STATUSES, TERMINAL_STATUSES, marks


class SqliteStore:
    """`jobs` reads the stored jobs and specs back: the job types are composed by the service, not known here."""

    def __init__(self, path: Path, jobs: JobCodec) -> None:
        self.path = path
        self.jobs = jobs
        self._lock = threading.Lock()
        self._owner = take_ownership(path)
        try:
            self._db = open_checked(path)
        except BaseException:
            # A store it cannot use is left as it was found: the lock file this start made goes too.
            lock_path(path).unlink(missing_ok=True)
            os.close(self._owner)
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
            os.close(self._owner)  # releases the flock

    async def aclose(self) -> None:
        await self._off_loop(self.close)

    # -------------------------------------------------------------------------------------- plumbing

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return work(self._db)

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """One transaction: committed (and synced) when `work` returns, rolled back if it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    async def _off_loop(self, blocking: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(blocking)

    # ------------------------------------------------------------------------------------------ jobs

    def insert_jobs_blocking(self, records: Sequence[JobRecord]) -> None:
        rows = [
            (
                r.job.job_id,
                r.job.type,
                r.job.status,
                r.job.created_at,
                r.prompt,
                _encode(r.job),
                _encode(r.spec),
            )
            for r in records
        ]
        self._write(
            lambda db: db.executemany(
                "INSERT OR IGNORE INTO jobs (job_id, type, status, created_at, prompt, job, spec) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        )

    async def add_job(self, record: JobRecord) -> None:
        await self._off_loop(partial(self.insert_jobs_blocking, [record]))

    async def save_job(self, record: JobRecord) -> None:
        row = (record.job.status, _encode(record.job), _encode(record.spec), record.job.job_id)
        await self._off_loop(
            partial(
                self._run, lambda db: db.execute("UPDATE jobs SET status = ?, job = ?, spec = ? WHERE job_id = ?", row)
            )
        )

    def _record(self, row: tuple[bytes, bytes | None]) -> JobRecord:
        spec = row[1]
        return JobRecord(self.jobs.job(row[0]), self.jobs.spec(spec) if spec is not None and spec != b"null" else None)

    async def job(self, job_id: str) -> JobRecord | None:
        row = await self._off_loop(
            partial(
                self._run, lambda db: db.execute("SELECT job, spec FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            )
        )
        return self._record(row) if row else None

    async def active_jobs(self) -> list[JobRecord]:
        rows = await self._off_loop(
            partial(
                self._run,
                lambda db: db.execute(
                    f"SELECT job, spec FROM jobs WHERE status IN ({_marks(_ACTIVE)}) ORDER BY seq", _ACTIVE
                ).fetchall(),
            )
        )
        return [self._record(row) for row in rows]

    def _list_blocking(self, query: QueueQuery) -> tuple[list[Job], int | None]:
        where, args = job_filters(query, "LIKE")
        with self._lock:
            db = self._db
            if query.limit is None:
                rows = db.execute(
                    listing_sql(where, paged=False), (*args, *_ACTIVE, *args, *_TERMINAL, DEFAULT_FINISHED_LISTED)
                ).fetchall()
            else:
                rows = db.execute(listing_sql(where, paged=True), (*args, query.limit or -1, query.offset)).fetchall()
            # Counting scans the matches: only where a filter makes it differ from the caller's total.
            matched = db.execute(f"SELECT count(*) FROM jobs WHERE {where}", args).fetchone()[0] if args else None
        rows.sort()
        return [self.jobs.job(job) for _, job in rows], matched

    async def list_jobs(self, query: QueueQuery) -> tuple[list[Job], int | None]:
        return await self._off_loop(partial(self._list_blocking, query))

    async def status_counts(self) -> dict[JobStatus, int]:
        rows = await self._off_loop(
            partial(self._run, lambda db: db.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
        )
        return dict(rows)

    def _prune_blocking(self, keep: int, created_before: str | None) -> list[str]:
        def prune(db: sqlite3.Connection) -> list[str]:
            finished = f"status IN ({_marks(_TERMINAL)})"
            doomed: list[str] = []
            if keep > 0:
                boundary = db.execute(
                    f"SELECT seq FROM jobs WHERE {finished} ORDER BY seq DESC LIMIT 1 OFFSET ?", (*_TERMINAL, keep - 1)
                ).fetchone()
                if boundary:
                    doomed += [
                        r[0]
                        for r in db.execute(
                            f"SELECT job_id FROM jobs WHERE {finished} AND seq < ?", (*_TERMINAL, boundary[0])
                        )
                    ]
            if created_before:
                doomed += [
                    r[0]
                    for r in db.execute(
                        f"SELECT job_id FROM jobs WHERE {finished} AND created_at < ?", (*_TERMINAL, created_before)
                    )
                ]
            doomed = sorted(set(doomed))
            db.executemany("DELETE FROM jobs WHERE job_id = ?", [(job_id,) for job_id in doomed])
            return doomed

        return self._write(prune)

    async def prune_finished(self, keep: int, created_before: str | None) -> list[str]:
        return await self._off_loop(partial(self._prune_blocking, keep, created_before))

    # --------------------------------------------------------------------------------- state values

    def set_value_blocking(self, key: str, value: object | None) -> None:
        if value is None:
            self._run(lambda db: db.execute("DELETE FROM state_values WHERE key = ?", (key,)))
        else:
            data = _encode(value)
            self._run(
                lambda db: db.execute("INSERT OR REPLACE INTO state_values (key, value) VALUES (?, ?)", (key, data))
            )

    async def set_value(self, key: str, value: object | None) -> None:
        await self._off_loop(partial(self.set_value_blocking, key, value))

    async def value(self, key: str, type_: type[T]) -> T | None:
        row = await self._off_loop(
            partial(self._run, lambda db: db.execute("SELECT value FROM state_values WHERE key = ?", (key,)).fetchone())
        )
        if row is None:
            return None
        try:
            return msgspec.json.decode(row[0], type=type_)
        except msgspec.ValidationError as exc:
            raise StoreUnusable(
                f"{self.path}: stored value '{key}' does not fit this version ({exc}); the file was left untouched"
            ) from None

    # ------------------------------------------------------------------------------ idempotent answers

    async def remembered_answer(self, key: str) -> RememberedAnswer | None:
        row = await self._off_loop(
            partial(
                self._run,
                lambda db: db.execute(
                    "SELECT fingerprint, answer, created_at FROM idempotent_answers WHERE key = ?", (key,)
                ).fetchone(),
            )
        )
        return None if row is None else RememberedAnswer(row[0], bytes(row[1]), row[2])

    async def remember_answer(self, key: str, answer: RememberedAnswer) -> None:
        row = (key, answer.fingerprint, answer.answer, answer.created_at)
        await self._off_loop(
            partial(
                self._write,
                lambda db: db.execute(
                    "INSERT OR REPLACE INTO idempotent_answers (key, fingerprint, answer, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    row,
                ),
            )
        )

    async def forget_answers_before(self, created_before: float) -> None:
        await self._off_loop(
            partial(
                self._write,
                lambda db: db.execute("DELETE FROM idempotent_answers WHERE created_at < ?", (created_before,)),
            )
        )

    # ------------------------------------------------------------------------------- webhook deliveries

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        rows = [(d.delivery_id, d.url, d.body, d.attempts, d.next_at, d.last_error) for d in deliveries]
        await self._off_loop(
            partial(
                self._write,
                lambda db: db.executemany(
                    "INSERT OR REPLACE INTO webhook_deliveries (delivery_id, url, body, attempts, next_at, last_error) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                ),
            )
        )

    async def pending_deliveries(self) -> list[Delivery]:
        rows = await self._off_loop(
            partial(
                self._run,
                lambda db: db.execute(
                    "SELECT delivery_id, url, body, attempts, next_at, last_error FROM webhook_deliveries "
                    "ORDER BY next_at"
                ).fetchall(),
            )
        )
        return [Delivery(row[0], row[1], bytes(row[2]), row[3], row[4], row[5]) for row in rows]

    async def update_delivery(self, delivery: Delivery) -> None:
        await self.add_deliveries([delivery])

    async def remove_delivery(self, delivery_id: str) -> None:
        await self._off_loop(
            partial(
                self._write,
                lambda db: db.execute("DELETE FROM webhook_deliveries WHERE delivery_id = ?", (delivery_id,)),
            )
        )

    # --------------------------------------------------------------------------------------- hashes

    def set_hashes_blocking(self, entries: dict[str, CachedHash]) -> None:
        rows = [(path, e.size, e.mtime_ns, e.sha256) for path, e in entries.items()]
        self._write(
            lambda db: db.executemany(
                "INSERT OR REPLACE INTO model_hashes (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)", rows
            )
        )

    async def set_hash(self, path: str, entry: CachedHash) -> None:
        await self._off_loop(partial(self.set_hashes_blocking, {path: entry}))

    async def hashes(self) -> dict[str, CachedHash]:
        rows = await self._off_loop(
            partial(
                self._run, lambda db: db.execute("SELECT path, size, mtime_ns, sha256 FROM model_hashes").fetchall()
            )
        )
        return {path: CachedHash(size, mtime_ns, sha256) for path, size, mtime_ns, sha256 in rows}

    # ------------------------------------------------------------------------------------ histories

    def history_add_blocking(self, feature: str, entries: Sequence[tuple[str | None, object]], keep: int) -> None:
        def add(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO history (feature, entry_id, entry) VALUES (?, ?, ?)",
                [(feature, entry_id, _encode(entry)) for entry_id, entry in entries],
            )
            db.execute(
                "DELETE FROM history WHERE feature = ? AND seq NOT IN "
                "(SELECT seq FROM history WHERE feature = ? ORDER BY seq DESC LIMIT ?)",
                (feature, feature, keep),
            )

        self._write(add)

    async def history_add(self, feature: str, entries: Sequence[tuple[str | None, object]], keep: int) -> None:
        await self._off_loop(partial(self.history_add_blocking, feature, entries, keep))

    async def history_page(
        self, feature: str, type_: type[T], limit: int | None, offset: int = 0, newest_first: bool = True
    ) -> list[T]:
        order = "DESC" if newest_first else "ASC"
        rows = await self._off_loop(
            partial(
                self._run,
                lambda db: db.execute(
                    f"SELECT entry FROM history WHERE feature = ? ORDER BY seq {order} LIMIT ? OFFSET ?",
                    (feature, -1 if limit is None else limit, offset),
                ).fetchall(),
            )
        )
        decode = msgspec.json.Decoder(type_).decode
        return [decode(row[0]) for row in rows]

    async def history_entry(self, feature: str, entry_id: str, type_: type[T]) -> T | None:
        row = await self._off_loop(
            partial(
                self._run,
                lambda db: db.execute(
                    "SELECT entry FROM history WHERE feature = ? AND entry_id = ?", (feature, entry_id)
                ).fetchone(),
            )
        )
        return msgspec.json.decode(row[0], type=type_) if row else None

    async def history_delete(self, feature: str, entry_id: str | None = None) -> int:
        sql, args = "DELETE FROM history WHERE feature = ?", [feature]
        if entry_id is not None:
            sql, args = sql + " AND entry_id = ?", [feature, entry_id]
        cursor = await self._off_loop(partial(self._run, lambda db: db.execute(sql, args)))
        return cursor.rowcount

    async def history_count(self, feature: str) -> int:
        row = await self._off_loop(
            partial(
                self._run,
                lambda db: db.execute("SELECT count(*) FROM history WHERE feature = ?", (feature,)).fetchone(),
            )
        )
        return int(row[0])

    # -------------------------------------------------------------------------------- child processes

    def record_child(self, pid: int, exe: str) -> None:
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO child_processes (pid, exe) VALUES (?, ?)", (pid, exe)))

    def forget_child(self, pid: int) -> None:
        self._run(lambda db: db.execute("DELETE FROM child_processes WHERE pid = ?", (pid,)))

    def recorded_children(self) -> dict[int, str]:
        return dict(self._run(lambda db: db.execute("SELECT pid, exe FROM child_processes").fetchall()))

    def forget_all_children(self) -> None:
        self._run(lambda db: db.execute("DELETE FROM child_processes"))


# ------------------------------------------------------------------------------------------ opening


def _refuse(path: Path, why: str) -> StoreUnusable:
    return StoreUnusable(
        f"cannot use the state store {path}: {why}. The file was left untouched: move it "
        "away to start with an empty history, or restore a backup."
    )


def _stored_version(db: sqlite3.Connection, path: Path) -> int:
    """The schema version of an existing file (0 for a new, empty database); refuses foreign or damaged files."""
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return 0
        if "schema_version" not in tables:
            raise _refuse(path, "it is an SQLite database, but not one of sdcpp-restapi")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        check = db.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise _refuse(path, f"it is damaged or not an SQLite database ({exc})") from None
    if row is None or not isinstance(row[0], int):
        raise _refuse(path, "its schema_version table is empty")
    if check is None or check[0] != "ok":
        raise _refuse(path, f"its integrity check failed ({check[0] if check else 'no answer'})")
    if row[0] > SCHEMA_VERSION:
        raise _refuse(
            path,
            f"it was written by a newer version of sdcpp-restapi (schema {row[0]}; this "
            f"version knows up to {SCHEMA_VERSION})",
        )
    return int(row[0])


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def take_ownership(path: Path) -> int:
    """An exclusive lock on the store for this process (the descriptor holds it), or StoreUnusable naming the
    process that has it. Blocking: start-up only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _refuse(path, f"its lock file {lock} cannot be opened ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StoreUnusable(
            f"{path} is in use by another sdcpp-restapi server (pid {holder}): one server per output folder; "
            "stop it, or give this one another --output-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def open_checked(path: Path) -> sqlite3.Connection:
    """Open (creating if absent), check and migrate the store. Blocking: start-up only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _refuse(path, f"it cannot be opened ({exc})") from None
    try:
        version = _stored_version(db, path)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA busy_timeout = 5000")
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    db.execute(statement)
                if target == 1:
                    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    db.execute("INSERT INTO schema_version (version) VALUES (1)")
                else:
                    db.execute("UPDATE schema_version SET version = ?", (target,))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    return db


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
