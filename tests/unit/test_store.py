"""The stores on their own: the same behaviour from the SQLite and the PostgreSQL store (parametrized: jobs,
listing, search, pruning, values, answers, hashes, histories, child processes), schema versions, refusal of files
and databases they cannot use (left untouched), and the import of the JSON state files older versions wrote."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import get_args

import anyio
import msgspec
import psycopg
import pytest
import pytest_asyncio

from core.errors import StoreUnreachable
from core.generation.previews import PreviewSettings
from core.generation.requests import Txt2ImgRequest
from core.generation.specs import Img2ImgJob, Txt2ImgJob
from core.job_types import JOB_CODEC
from core.jobs.idempotency import RememberedAnswer
from core.jobs.records import JobRecord
from core.jobs.schemas import Job, JobStatus, JobType, Progress, QueueQuery
from core.legacy_json import import_legacy_files
from core.models.hashing import CachedHash
from core.models.specs import HashJob, HashResult
from core.prompt_help.schemas import ChatMessage, Enhancement
from core.store import Store, StoreUnusable
from core.store.postgres import DOWN_HOLD_S, PostgresStore
from core.store.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION
from core.store.sqlite import SCHEMA_VERSION, STORE_FILE, SqliteStore
from core.store.transfer import ImportRefused, ImportReport, import_sqlite_store
from core.webhooks.schemas import Delivery
from litestar_app.cli import main as cli_main
from tests.postgres import PostgresServer


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_store_records_its_schema_version(tmp_path: Path) -> None:
    SqliteStore(tmp_path / STORE_FILE, JOB_CODEC).close()
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_second_server_on_one_output_folder_is_refused_until_the_first_is_gone(tmp_path: Path) -> None:
    """Two servers on one store would both run its pending jobs: the second start is refused, naming the first."""
    first = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    with pytest.raises(StoreUnusable, match=r"in use by another sdcpp-restapi server \(pid \d+\)"):
        SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    first.close()
    SqliteStore(tmp_path / STORE_FILE, JOB_CODEC).close()


def test_a_killed_server_leaves_no_stale_lock(tmp_path: Path) -> None:
    """A server that was SIGKILLed while holding the store does not block the next start."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from core.job_types import JOB_CODEC; "
            "from core.store.sqlite import SqliteStore; SqliteStore(Path(sys.argv[1]), JOB_CODEC); "
            "print('open', flush=True); time.sleep(60)",
            str(tmp_path / STORE_FILE),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreUnusable, match=f"pid {holder.pid}"):
            SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    SqliteStore(tmp_path / STORE_FILE, JOB_CODEC).close()


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_damaged_store_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / STORE_FILE
    path.write_bytes(content)
    with pytest.raises(StoreUnusable, match="damaged or not an SQLite database") as refused:
        SqliteStore(path, JOB_CODEC)
    assert str(path) in str(refused.value) and "left untouched" in str(refused.value)
    assert path.read_bytes() == content


def test_a_store_from_a_newer_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    SqliteStore(path, JOB_CODEC).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.close()
    before = digest(path)
    with pytest.raises(StoreUnusable, match=f"newer version of sdcpp-restapi \\(schema {SCHEMA_VERSION + 1}"):
        SqliteStore(path, JOB_CODEC)
    assert digest(path) == before


def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")
    db.close()
    before = digest(path)
    with pytest.raises(StoreUnusable, match="not one of sdcpp-restapi"):
        SqliteStore(path, JOB_CODEC)
    assert digest(path) == before


OLD_PARAMS: dict[str, object] = {
    "prompt": "an old cat",
    "width": 64,
    "height": 64,
    "steps": 2,
    "seed": 42,
    "init_image_base64": "<64x48 image: inputs/init_image.png>",
}
OLD_JOB = {
    "job_id": "11111111-1111-1111-1111-111111111111",
    "type": "img2img",
    "status": "completed",
    "progress": {
        "step": 2,
        "total_steps": 2,
        "current_image": 0,
        "total_images": 1,
        "all_steps": 2,
        "current_all_steps": 2,
        "percentage": 100.0,
    },
    "created_at": "2026-01-01T10:00:00.000Z",
    "started_at": "2026-01-01T10:00:01.000Z",
    "completed_at": "2026-01-01T10:00:05.000Z",
    "outputs": ["11111111-1111-1111-1111-111111111111/image_0.png"],
    "params": OLD_PARAMS,
}
OLD_SPEC = {**OLD_PARAMS, "inputs": {"init_image": "inputs/init_image.png"}}
OLD_PENDING_HASH = {
    "job_id": "22222222-2222-2222-2222-222222222222",
    "type": "hash",
    "status": "pending",
    "progress": {
        "step": 0,
        "total_steps": 0,
        "current_image": 0,
        "total_images": 1,
        "all_steps": 0,
        "current_all_steps": 0,
        "percentage": 0.0,
    },
    "created_at": "2026-01-01T11:00:00.000Z",
    "params": {"model_type": "lora", "path": "x.safetensors", "expected_sha256": None},
}
OLD_HASH_SPEC = {"target": "/models/loras/x.safetensors", "expected_sha256": None, "download_job_id": "d"}


def write_old_state(folder: Path) -> dict[str, bytes]:
    files = {
        "queue_state.json": {
            "jobs": [{"job": OLD_JOB, "spec": OLD_SPEC}, {"job": OLD_PENDING_HASH, "spec": OLD_HASH_SPEC}],
            "loaded_model": {"model_name": "m.safetensors", "model_type": "diffusion"},
            "loaded_upscaler": None,
        },
        ".hash_cache.json": {"/models/a.safetensors": {"size": 3, "mtime_ns": 7, "sha256": "ab" * 32}},
        ".preview_settings.json": {"enabled": False, "mode": "proj", "interval": 2, "max_size": 128, "quality": 60},
        ".ollama_state.json": {
            "settings": {
                "enabled": True,
                "base_url": "http://127.0.0.1:9",
                "model": "m",
                "timeout_seconds": 5.0,
                "max_history": 10,
                "api_key": "",
            },
            "history": [
                {
                    "id": "e1",
                    "original_prompt": "cat",
                    "enhanced_prompt": "a cat",
                    "model_used": "m",
                    "created_at": 1,
                    "success": True,
                    "error_message": "",
                }
            ],
        },
        ".assistant_state.json": {
            "settings": {
                "enabled": False,
                "base_url": "http://127.0.0.1:9",
                "model": "m",
                "timeout_seconds": 5.0,
                "max_history": 10,
                "api_key": "",
            },
            "history": [
                {"role": "user", "content": "hi", "timestamp": 1},
                {"role": "assistant", "content": "hello", "timestamp": 2},
            ],
        },
        ".children.json": {"999999": "/nowhere/sd-server"},
    }
    written = {}
    for name, value in files.items():
        written[name] = json.dumps(value).encode()
        (folder / name).write_bytes(written[name])
    return written


async def test_old_json_state_is_imported_then_renamed(tmp_path: Path) -> None:
    written = write_old_state(tmp_path)
    store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    import_legacy_files(store, tmp_path)
    for name, content in written.items():
        assert not (tmp_path / name).exists()
        assert (tmp_path / f"{name}.imported").read_bytes() == content
    old = await store.job(OLD_JOB["job_id"])  # type: ignore[arg-type]
    assert old is not None and old.job.status == "completed"
    # The old params as clients saw them, typed: the "<64x48 image: path>" string is read back as the image's file.
    shown = msgspec.to_builtins(old.job.params)
    assert {key: shown[key] for key in OLD_PARAMS} == {
        **OLD_PARAMS,
        "init_image_base64": {"path": "inputs/init_image.png", "width": 64, "height": 48},
    }
    assert isinstance(old.spec, Img2ImgJob) and old.spec.request.seed == 42
    assert old.spec.inputs.init_image is not None and (
        old.spec.inputs.init_image.width,
        old.spec.inputs.init_image.height,
    ) == (64, 48)
    pending = await store.job(str(OLD_PENDING_HASH["job_id"]))
    assert pending is not None and isinstance(pending.spec, HashJob) and pending.job.status == "pending"
    assert (await store.value("loaded_model", dict))["model_name"] == "m.safetensors"
    assert await store.hashes() == {"/models/a.safetensors": CachedHash(3, 7, "ab" * 32)}
    assert (await store.value("preview_settings", dict))["mode"] == "proj"
    assert [e.enhanced_prompt for e in await store.history_page("ollama", Enhancement, None)] == ["a cat"]
    chat = await store.history_page("assistant", ChatMessage, None, newest_first=False)
    assert [m.content for m in chat] == ["hi", "hello"]
    assert store.recorded_children() == {999999: "/nowhere/sd-server"}
    store.close()


async def test_an_imported_job_without_a_readable_spec_is_still_found_by_its_prompt(tmp_path: Path) -> None:
    broken = {**OLD_JOB, "job_id": "33333333-3333-3333-3333-333333333333", "params": {**OLD_PARAMS, "prompt": "lost"}}
    state = {"jobs": [{"job": broken, "spec": {"steps": "not a number"}}]}
    (tmp_path / "queue_state.json").write_text(json.dumps(state))
    store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    import_legacy_files(store, tmp_path)
    found, matched = await store.list_jobs(QueueQuery(search="LOST", limit=0))
    assert [job.job_id for job in found] == [broken["job_id"]] and matched == 1
    record = await store.job(str(broken["job_id"]))
    assert record is not None and record.spec is None
    store.close()


def test_an_old_file_that_does_not_decode_stops_the_import_untouched(tmp_path: Path) -> None:
    (tmp_path / "queue_state.json").write_text('{"jobs": [{"job": ')
    store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    with pytest.raises(StoreUnusable, match=r"queue_state\.json"):
        import_legacy_files(store, tmp_path)
    assert (tmp_path / "queue_state.json").read_text() == '{"jobs": [{"job": '
    store.close()


async def test_values_that_no_longer_fit_stop_the_server(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    store.set_value_blocking("preview_settings", {"mode": "hologram"})
    with pytest.raises(StoreUnusable, match="preview_settings"):
        await store.value("preview_settings", PreviewSettings)
    store.close()
    with sqlite3.connect(tmp_path / STORE_FILE) as db:  # not rewritten: the value is still there
        assert db.execute("SELECT count(*) FROM state_values").fetchone() == (1,)


async def test_a_job_result_is_stored_typed(store: Store) -> None:
    spec = HashJob(
        model_type="lora", path="x.safetensors", target="/m/x.safetensors", expected_sha256=None, download_job_id="d"
    )
    job = Job(
        job_id="h",
        type="hash",
        status="completed",
        progress=Progress(),
        created_at="2026-01-01T00:00:00.000Z",
        params=spec.params(),
        result=HashResult("ef" * 32),
    )
    await store.add_job(JobRecord(job, spec))
    read = await store.job("h")
    assert read is not None and read.job == job and read.spec == spec
    assert msgspec.to_builtins(read.job)["result"] == {"sha256": "ef" * 32}


async def test_jobs_an_earlier_sqlite_store_holds_display_with_typed_params(tmp_path: Path) -> None:
    """Rows written before params were typed (images as "<WxH image: path>", the hash job's digest in params) are
    read as today's params and result; the rows themselves are not rewritten."""
    store = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    old_hash = {
        **OLD_PENDING_HASH,
        "status": "completed",
        "params": {"model_type": "lora", "path": "x.safetensors", "expected_sha256": None, "sha256": "cd" * 32},
    }
    rows = [
        (job["job_id"], job["type"], job["status"], job["created_at"], json.dumps(job).encode())
        for job in (OLD_JOB, old_hash)
    ]
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        db.executemany("INSERT INTO jobs (job_id, type, status, created_at, job) VALUES (?, ?, ?, ?, ?)", rows)
    db.close()
    image = await store.job(str(OLD_JOB["job_id"]))
    assert image is not None and image.spec is None
    shown = msgspec.to_builtins(image.job.params)
    assert shown["init_image_base64"] == {"path": "inputs/init_image.png", "width": 64, "height": 48}
    assert (shown["prompt"], shown["seed"]) == ("an old cat", 42)
    hashed = await store.job(str(old_hash["job_id"]))
    assert hashed is not None and hashed.job.result == HashResult("cd" * 32)
    assert msgspec.to_builtins(hashed.job.params) == {
        "model_type": "lora",
        "path": "x.safetensors",
        "expected_sha256": None,
    }
    listed, _ = await store.list_jobs(QueueQuery(limit=0))
    assert [msgspec.to_builtins(job.params).get("prompt") for job in listed] == ["an old cat", None]
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        assert [row[0] for row in db.execute("SELECT job FROM jobs ORDER BY seq")] == [row[4] for row in rows]
    db.close()
    store.close()


def test_the_store_reads_every_job_type() -> None:
    assert set(get_args(JobType)) == set(JOB_CODEC.specs)


# ----------------------------------------------------------------------- both stores, the same behaviour


@pytest_asyncio.fixture(params=["sqlite", "postgres"], loop_scope="function")  # the test's loop runs its pool
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store
    if request.param == "sqlite":
        made = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    else:
        made = PostgresStore(request.getfixturevalue("postgres_url"), JOB_CODEC)
    yield made
    await made.aclose()


def txt2img(job_id: str, prompt: str, status: JobStatus = "pending", created: str = "2026-01-01") -> JobRecord:
    spec = Txt2ImgJob(request=Txt2ImgRequest(prompt=prompt, seed=1))
    job = Job(
        job_id=job_id,
        type="txt2img",
        status=status,
        progress=Progress(),
        created_at=f"{created}T00:00:00.000Z",
        params=spec.params(),
    )
    return JobRecord(job, spec)


async def test_jobs_are_listed_searched_counted_and_pruned_alike(store: Store) -> None:
    statuses: list[JobStatus] = ["completed", "pending", "failed", "processing", "completed", "cancelled"]
    prompts = ["A red Fox", "100% cotton", "snake_case", "back\\slash", "plain fox", "other"]
    for n, (status, prompt) in enumerate(zip(statuses, prompts, strict=True)):
        await store.add_job(txt2img(f"j{n}", prompt, status, created=f"2026-01-0{n + 1}"))
    await store.add_job(txt2img("j0", "a duplicate id is ignored"))
    assert [r.job.job_id for r in await store.active_jobs()] == ["j1", "j3"]
    assert await store.status_counts() == {"completed": 2, "pending": 1, "failed": 1, "processing": 1, "cancelled": 1}

    async def ids(**query: object) -> tuple[list[str], int | None]:
        jobs, matched = await store.list_jobs(QueueQuery(**query))  # type: ignore[arg-type]
        return [job.job_id for job in jobs], matched

    assert await ids() == (["j0", "j1", "j2", "j3", "j4", "j5"], None)
    assert await ids(search="FOX") == (["j0", "j4"], 2)  # ASCII letters of either case
    assert await ids(search="%") == (["j1"], 1)  # the wildcards match themselves
    assert await ids(search="_") == (["j2"], 1)
    assert await ids(search="\\") == (["j3"], 1)
    assert await ids(status=["completed", "pending"]) == (["j0", "j1", "j4"], 3)
    assert await ids(type=["hash"]) == ([], 0)
    assert await ids(limit=2, offset=1) == (["j3", "j4"], None)  # a page counts from the newest
    assert await ids(limit=0) == (["j0", "j1", "j2", "j3", "j4", "j5"], None)

    record = txt2img("j1", "100% cotton", "completed")
    record.job.outputs = ["j1/image_0.png"]
    await store.save_job(record)
    saved = await store.job("j1")
    assert saved is not None and saved.job.status == "completed" and saved.job.outputs == ["j1/image_0.png"]
    assert await store.job("nope") is None

    assert sorted(await store.prune_finished(3, None)) == ["j0", "j1"]  # the newest 3 finished stay
    assert await store.prune_finished(0, "2026-01-06") == ["j2", "j4"]  # finished and created before the date
    assert (await ids())[0] == ["j3", "j5"]


class Entry(msgspec.Struct):
    text: str


async def test_values_answers_hashes_histories_and_children_alike(store: Store) -> None:
    assert await store.value("k", int) is None
    await store.set_value("k", 1)
    await store.set_value("k", 2)
    assert await store.value("k", int) == 2
    await store.set_value("k", None)
    assert await store.value("k", int) is None

    answer = RememberedAnswer("f" * 64, b'{"job_id":"x"}', 1000.5)
    await store.remember_answer("route\nkey", answer)
    assert await store.remembered_answer("route\nkey") == answer
    await store.forget_answers_before(2000.0)
    assert await store.remembered_answer("route\nkey") is None

    await store.set_hash("/m/a", CachedHash(1, 2, "aa"))
    await store.set_hash("/m/a", CachedHash(3, 4, "bb"))
    assert await store.hashes() == {"/m/a": CachedHash(3, 4, "bb")}

    entries = [(f"e{n}", Entry(f"o{n}")) for n in range(4)]
    await store.history_add("enhance", entries[:3], keep=10)
    await store.history_add("enhance", entries[3:], keep=3)
    assert await store.history_count("enhance") == 3
    page = await store.history_page("enhance", Entry, limit=2)
    assert [e.text for e in page] == ["o3", "o2"]
    oldest = await store.history_page("enhance", Entry, limit=None, offset=1, newest_first=False)
    assert [e.text for e in oldest] == ["o2", "o3"]
    found = await store.history_entry("enhance", "e2", Entry)
    assert found is not None and found.text == "o2"
    assert await store.history_delete("enhance", "e2") == 1
    assert await store.history_delete("enhance") == 2

    first, second = Delivery("d1", "http://a/", b"{}", 0, 20.0), Delivery("d2", "http://b/", b"[]", 1, 10.0)
    await store.add_deliveries([first, second])
    await store.update_delivery(Delivery("d1", "http://a/", b"{}", 1, 5.0, "timed out"))
    assert await store.pending_deliveries() == [Delivery("d1", "http://a/", b"{}", 1, 5.0, "timed out"), second]
    await store.remove_delivery("d1")
    assert await store.pending_deliveries() == [second]

    await anyio.to_thread.run_sync(store.record_child, 4242, "/bin/sd-cli")
    assert await anyio.to_thread.run_sync(store.recorded_children) == {4242: "/bin/sd-cli"}
    await anyio.to_thread.run_sync(store.forget_child, 4242)
    await anyio.to_thread.run_sync(store.record_child, 4243, "/bin/sd-server")
    await anyio.to_thread.run_sync(store.forget_all_children)
    assert await anyio.to_thread.run_sync(store.recorded_children) == {}


# ------------------------------------------------------------------------------------ PostgreSQL only


def pg_schema(url: str) -> list[tuple[object, ...]]:
    """Every table and column of the sdcpp_restapi schema, and its version rows: to see it left untouched."""
    with psycopg.connect(url, autocommit=True) as db:
        columns = db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'sdcpp_restapi' "
            "ORDER BY 1, 2"
        ).fetchall()
        try:
            versions = db.execute("SELECT * FROM sdcpp_restapi.schema_version").fetchall()
        except psycopg.Error:
            versions = []
    return [*columns, *versions]


def test_a_new_postgres_store_records_its_schema_version(postgres_url: str) -> None:
    PostgresStore(postgres_url, JOB_CODEC).close()
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT version, written_by FROM sdcpp_restapi.schema_version").fetchall() == [
            (PG_SCHEMA_VERSION, "sdcpp-restapi")
        ]


def test_a_postgres_store_of_a_newer_version_is_refused_and_left_untouched(postgres_url: str) -> None:
    PostgresStore(postgres_url, JOB_CODEC).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE sdcpp_restapi.schema_version SET version = 99")
    before = pg_schema(postgres_url)
    with pytest.raises(StoreUnusable, match=r"newer version of sdcpp-restapi \(schema 99; this version knows up to"):
        PostgresStore(postgres_url, JOB_CODEC)
    assert pg_schema(postgres_url) == before


@pytest.mark.parametrize(
    "foreign",
    [
        "CREATE TABLE sdcpp_restapi.photos (id INTEGER)",
        "CREATE TABLE sdcpp_restapi.schema_version (v TEXT); INSERT INTO sdcpp_restapi.schema_version VALUES ('x')",
        "CREATE TABLE sdcpp_restapi.schema_version (version INTEGER, written_by TEXT); "
        "INSERT INTO sdcpp_restapi.schema_version VALUES (1, 'someone else')",
    ],
)
def test_a_foreign_sdcpp_restapi_schema_is_refused_and_left_untouched(postgres_url: str, foreign: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE SCHEMA sdcpp_restapi")
        for statement in foreign.split("; "):
            db.execute(statement)
    before = pg_schema(postgres_url)
    with pytest.raises(StoreUnusable, match="its schema sdcpp_restapi exists but was not made by sdcpp-restapi"):
        PostgresStore(postgres_url, JOB_CODEC)
    assert pg_schema(postgres_url) == before


def test_a_second_server_on_one_database_is_refused_until_the_first_is_gone(postgres_url: str) -> None:
    first = PostgresStore(postgres_url, JOB_CODEC)
    with pytest.raises(StoreUnusable, match=r"in use by another sdcpp-restapi server \(sdcpp-restapi .* pid \d+"):
        PostgresStore(postgres_url, JOB_CODEC)
    first.close()
    PostgresStore(postgres_url, JOB_CODEC).close()


def test_an_unreachable_database_stops_the_start_with_a_clear_message() -> None:
    with pytest.raises(
        StoreUnusable, match=r"cannot reach the PostgreSQL store postgresql://u:\*\*\*@127\.0\.0\.1:1/x"
    ):
        PostgresStore("postgresql://u:secret@127.0.0.1:1/x", JOB_CODEC)


async def test_a_status_change_while_the_database_is_down_is_kept_and_written_when_it_is_back(
    postgres: PostgresServer, postgres_url: str
) -> None:
    """The queue's save never fails for the store's sake: the newest state waits and is written once the database
    answers; a read meanwhile is StoreUnreachable (a 503), never a stale answer or a hang."""
    store = PostgresStore(postgres_url, JOB_CODEC)
    try:
        record = txt2img("j", "kept")
        await store.add_job(record)
        postgres.stop()
        try:
            record.job.status = "processing"
            await store.save_job(record)
            record.job.status = "completed"
            await store.save_job(record)
            with pytest.raises(StoreUnreachable) as refused:
                await store.job("j")
            assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "5"}
            with pytest.raises(StoreUnreachable):
                await store.add_job(txt2img("k", "refused"))
            assert await store.prune_finished(1, None) == []  # postponed, not failed
            await anyio.to_thread.run_sync(store.record_child, 1, "/x")  # a hint: skipped, not failed
        finally:
            postgres.start()
        await anyio.sleep(DOWN_HOLD_S)  # meanwhile calls fail at once, not after another wait
        saved = await store.job("j")
        assert saved is not None and saved.job.status == "completed"
        assert await store.job("k") is None
        assert store._reclaiming is not None
        await store._reclaiming  # the server lock, gone with the restart, is taken again at once
        with pytest.raises(StoreUnusable, match="in use by another sdcpp-restapi server"):
            PostgresStore(postgres_url, JOB_CODEC)
        await anyio.to_thread.run_sync(store.record_child, 2, "/y")  # the store's own connection was made again
        assert await anyio.to_thread.run_sync(store.recorded_children) == {2: "/y"}
    finally:
        await store.aclose()


async def test_import_store_copies_everything_in_order_and_refuses_a_store_in_use(
    tmp_path: Path, postgres_url: str
) -> None:
    source = SqliteStore(tmp_path / STORE_FILE, JOB_CODEC)
    for n, status in enumerate(["completed", "pending", "failed"]):
        await source.add_job(txt2img(f"j{n}", f"cat {n}", status))  # type: ignore[arg-type]
    await source.set_value("k", {"a": 1})
    await source.set_hash("/m/a", CachedHash(1, 2, "aa"))
    await source.history_add("enhance", [("e0", Entry("first")), ("e1", Entry("second"))], keep=10)
    await source.remember_answer("r\nk", RememberedAnswer("f", b"{}", 1.0))
    with pytest.raises(StoreUnusable, match="in use by another sdcpp-restapi server"):
        import_sqlite_store(tmp_path / STORE_FILE, postgres_url)
    source.close()

    report = import_sqlite_store(tmp_path / STORE_FILE, postgres_url)
    assert report == ImportReport({"completed": 1, "pending": 1, "failed": 1}, 0, 1, 1, {"enhance": 2}, 1, 0)
    target = PostgresStore(postgres_url, JOB_CODEC)
    try:
        listed, _ = await target.list_jobs(QueueQuery(limit=0))
        assert [job.job_id for job in listed] == ["j0", "j1", "j2"]
        assert [r.job.job_id for r in await target.active_jobs()] == ["j1"]
        assert await target.value("k", dict[str, int]) == {"a": 1}
        assert [e.text for e in await target.history_page("enhance", Entry, limit=None)] == ["second", "first"]
        assert await target.remembered_answer("r\nk") == RememberedAnswer("f", b"{}", 1.0)
        with pytest.raises(StoreUnusable, match="in use by another sdcpp-restapi server"):
            import_sqlite_store(tmp_path / STORE_FILE, postgres_url, merge=True)  # a server runs on the target
    finally:
        await target.aclose()
    with pytest.raises(ImportRefused, match=r"already holds 3 job\(s\); nothing was changed"):
        import_sqlite_store(tmp_path / STORE_FILE, postgres_url)
    merged = import_sqlite_store(tmp_path / STORE_FILE, postgres_url, merge=True)
    assert merged == ImportReport({}, 3, 0, 0, {}, 0, 0)
    with pytest.raises(ImportRefused, match="no SQLite store at"):
        import_sqlite_store(tmp_path / "absent.sqlite3", postgres_url)


async def test_a_newer_state_saved_while_an_older_one_is_written_is_kept(postgres_url: str) -> None:
    """PostgreSQL's kept states (a save that waits for the one under way): the queue saves the same record object
    again as the job moves on, and the last state saved is the one stored. (SQLite's saves each take their thread
    and its lock in any order; the queue awaits a job's saves one after the other.)"""
    store = PostgresStore(postgres_url, JOB_CODEC)
    record = txt2img("j", "moving")
    await store.add_job(record)
    record.job.status = "processing"
    first = asyncio.create_task(store.save_job(record))
    await asyncio.sleep(0)  # the first save is under way with the processing state
    record.job.status = "completed"
    await store.save_job(record)
    await first
    saved = await store.job("j")
    assert saved is not None and saved.job.status == "completed"
    await store.aclose()


def test_import_store_without_a_postgres_url_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SDCPP_RESTAPI_STORE_URL", raising=False)
    monkeypatch.delenv("SDCPP_RESTAPI_CONFIG", raising=False)
    assert cli_main(["import-store", "--output-dir", str(tmp_path)]) == 2
    assert "import-store needs the PostgreSQL store: set SDCPP_RESTAPI_STORE_URL" in capsys.readouterr().err
