"""`sdcpp-restapi import-store`: copy an SQLite store (the one-host default) into the PostgreSQL store of
`[store] url`, in one transaction, and say what moved.

Pending webhook deliveries come along too. Both stores are opened as a server would (their one-server locks held while copying, the SQLite file and the
database brought to this version's schema); a target that already holds jobs is refused unless `merge`, which
keeps what the target has (a job, value, hash or answer of the same key is not overwritten; history entries with
the id of one already there are skipped). Child processes are not copied: they are pids of the SQLite host.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from core.store.postgres import claim_server, open_checked, shown_url
from core.store.sqlite import open_checked as open_sqlite
from core.store.sqlite import take_ownership


class ImportRefused(RuntimeError):
    """The import cannot be done as asked (nothing was changed)."""


class ImportReport(msgspec.Struct):
    jobs: dict[str, int]  # moved, by status
    jobs_kept: int  # already in the target (merge): the target's copy stays
    values: int
    hashes: int
    histories: dict[str, int]  # entries moved, by feature
    answers: int  # idempotent answers
    deliveries: int  # webhook deliveries not yet made

    def lines(self) -> list[str]:
        moved = sum(self.jobs.values())
        by_status = ", ".join(f"{status} {count}" for status, count in sorted(self.jobs.items()))
        histories = ", ".join(f"{feature} {count}" for feature, count in sorted(self.histories.items()))
        return [
            f"jobs: {moved}" + (f" ({by_status})" if by_status else ""),
            *([f"jobs already in the target, kept as they are: {self.jobs_kept}"] if self.jobs_kept else []),
            f"state values: {self.values}",
            f"model hashes: {self.hashes}",
            f"history entries: {sum(self.histories.values())}" + (f" ({histories})" if histories else ""),
            f"idempotent answers: {self.answers}",
            f"webhook deliveries pending: {self.deliveries}",
        ]


def import_sqlite_store(source: Path, url: str, merge: bool = False) -> ImportReport:
    """Copy the SQLite store at `source` into the PostgreSQL store at `url`. Blocking."""
    if not source.is_file():
        raise ImportRefused(f"no SQLite store at {source} (give its path with --from, or --output-dir)")
    owner = take_ownership(source)
    try:
        db = open_sqlite(source)
        try:
            target = open_checked(url)
            try:
                claim_server(target, url)
                return _copy(db, target, url, merge)
            finally:
                target.close()
        finally:
            db.close()
    finally:
        os.close(owner)


def _copy(db: sqlite3.Connection, target: psycopg.Connection[Any], url: str, merge: bool) -> ImportReport:
    with target.transaction():
        held = target.execute("SELECT count(*) FROM jobs").fetchone()
        if held and held[0] and not merge:
            raise ImportRefused(
                f"the PostgreSQL store {shown_url(url)} already holds {held[0]} job(s); nothing was changed. "
                "Pass --merge to add the SQLite store's jobs to them"
            )
        jobs: Counter[str] = Counter()
        kept = 0
        for row in db.execute("SELECT job_id, type, status, created_at, prompt, job, spec FROM jobs ORDER BY seq"):
            added = target.execute(
                "INSERT INTO jobs (job_id, type, status, created_at, prompt, job, spec) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING",
                row,
            ).rowcount
            if added:
                jobs[row[2]] += 1
            else:
                kept += 1
        values = _insert_new(target, db, "SELECT key, value FROM state_values", "state_values (key, value)", "key")
        hashes = _insert_new(
            target,
            db,
            "SELECT path, size, mtime_ns, sha256 FROM model_hashes",
            "model_hashes (path, size, mtime_ns, sha256)",
            "path",
        )
        answers = _insert_new(
            target,
            db,
            "SELECT key, fingerprint, answer, created_at FROM idempotent_answers",
            "idempotent_answers (key, fingerprint, answer, created_at)",
            "key",
        )
        deliveries = _insert_new(
            target,
            db,
            "SELECT delivery_id, url, body, attempts, next_at, last_error FROM webhook_deliveries",
            "webhook_deliveries (delivery_id, url, body, attempts, next_at, last_error)",
            "delivery_id",
        )
        histories: Counter[str] = Counter()
        for feature, entry_id, entry in db.execute("SELECT feature, entry_id, entry FROM history ORDER BY seq"):
            added = target.execute(
                "INSERT INTO history (feature, entry_id, entry) SELECT %s, %s, %s WHERE %s::text IS NULL OR NOT "
                "EXISTS (SELECT 1 FROM history WHERE feature = %s AND entry_id = %s)",
                (feature, entry_id, entry, entry_id, feature, entry_id),
            ).rowcount
            histories[feature] += added
    histories_moved = {feature: count for feature, count in histories.items() if count}
    return ImportReport(dict(jobs), kept, values, hashes, histories_moved, answers, deliveries)


def _insert_new(target: psycopg.Connection[Any], db: sqlite3.Connection, select: str, into: str, key: str) -> int:
    """Copy the rows the target does not have (by `key`); returns how many."""
    rows = db.execute(select).fetchall()
    if not rows:
        return 0
    marks = ", ".join(["%s"] * len(rows[0]))
    return sum(
        target.execute(f"INSERT INTO {into} VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING", row).rowcount
        for row in rows
    )
