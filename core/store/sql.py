"""The SQL both stores speak alike: the `GET /queue` filters and listing. Written with `?` marks (SQLite's);
the PostgreSQL store turns them into psycopg's `%s` with `postgres_marks`. Each store keeps the statements where
the two dialects differ (upserts, "no limit")."""

from __future__ import annotations

from collections.abc import Sequence

from core.jobs.schemas import ACTIVE, TERMINAL, QueueQuery

ACTIVE_STATUSES = tuple(sorted(ACTIVE))
TERMINAL_STATUSES = tuple(sorted(TERMINAL))


def marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def postgres_marks(sql: str) -> str:
    """The statement with psycopg's placeholders (the shared SQL holds no literal `?` or `%`)."""
    return sql.replace("?", "%s")


def job_filters(query: QueueQuery, like: str) -> tuple[str, list[object]]:
    """The WHERE clause of a queue query and its arguments. `like` is the operator that matches ASCII letters of
    either case (SQLite's LIKE, PostgreSQL's ILIKE); `%`, `_` and `\\` in the search match themselves."""
    clauses, args = ["TRUE"], list[object]()
    if query.status:
        clauses.append(f"status IN ({marks(query.status)})")
        args += query.status
    if query.type:
        clauses.append(f"type IN ({marks(query.type)})")
        args += query.type
    if query.search:
        escaped = query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(f"prompt {like} ? ESCAPE '\\'")
        args.append(f"%{escaped}%")
    return " AND ".join(clauses), args


def listing_sql(where: str, paged: bool) -> str:
    """Without a page: every active job and the newest finished ones (the last `?`); with one: newest first,
    `LIMIT ? OFFSET ?`. Both select (seq, job); the caller sorts by seq."""
    if paged:
        return f"SELECT seq, job FROM jobs WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?"
    return (
        f"SELECT seq, job FROM jobs WHERE {where} AND status IN ({marks(ACTIVE_STATUSES)}) "
        f"UNION ALL SELECT * FROM (SELECT seq, job FROM jobs WHERE {where} "
        f"AND status IN ({marks(TERMINAL_STATUSES)}) ORDER BY seq DESC LIMIT ?) AS finished"
    )
