"""The PostgreSQL store through the real server (SDCPP_RESTAPI_STORE_URL on the tests' private PostgreSQL): jobs
survive a restart and a SIGKILL right after their 202, a database it cannot use stops the server untouched, a
stopped database answers 503 with Retry-After and the queue resumes with nothing lost, and `import-store` moves a
real server's SQLite store."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import TINY_LOAD
from tests.postgres import PostgresServer
from tests.support import REPO, ServerProcess, wait_for_job, wait_until
from tests.unit.test_store import pg_schema

pytestmark = pytest.mark.integration
CHEAP = {"prompt": "pg cat", "width": 64, "height": 64, "steps": 1}
STORE = ".sdcpp-restapi.sqlite3"


def pg_server(models: Path, output: Path, log: Path, url: str) -> ServerProcess:
    return ServerProcess(models, output, log, env={"SDCPP_RESTAPI_STORE_URL": url})


def test_a_job_runs_and_is_listed_after_a_restart(own_models_dir: Path, tmp_path: Path, postgres_url: str) -> None:
    first = pg_server(own_models_dir, tmp_path / "output", tmp_path / "first.log", postgres_url).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as http:
            assert http.post("/models/load", json=TINY_LOAD).status_code == 200
            job_id = http.post("/txt2img", json=CHEAP).json()["job_id"]
            done = wait_for_job(http, job_id)
            assert done["status"] == "completed" and done["outputs"]
    finally:
        first.stop()
    assert not (tmp_path / "output" / STORE).exists()  # the SQLite store is not used
    second = pg_server(own_models_dir, tmp_path / "output", tmp_path / "second.log", postgres_url).start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as http:
            listed = http.get("/queue", params={"search": "PG CAT"}).json()
            assert [(job["job_id"], job["status"]) for job in listed["items"]] == [(job_id, "completed")]
            assert http.get(f"/queue/{job_id}").json()["outputs"] == done["outputs"]
    finally:
        second.stop()


def test_sigkill_right_after_202s_loses_no_job(own_models_dir: Path, tmp_path: Path, postgres_url: str) -> None:
    first = pg_server(own_models_dir, tmp_path / "output", tmp_path / "first.log", postgres_url).start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    with httpx.Client(base_url=first.url, timeout=30) as http:
        assert http.post("/models/load", json=TINY_LOAD).status_code == 200

    def submit(count: int) -> None:
        with httpx.Client(base_url=first.url, timeout=30) as http:
            for _ in range(count):
                try:
                    response = http.post("/txt2img", json=CHEAP)
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 202:
                    with lock:
                        acknowledged.append(response.json()["job_id"])
                        if len(acknowledged) == 60:
                            first.kill()  # SIGKILL in the middle of the burst

    submitters = [threading.Thread(target=submit, args=(20,)) for _ in range(4)]
    for thread in submitters:
        thread.start()
    for thread in submitters:
        thread.join(timeout=120)
    assert first.process is not None and first.process.poll() is not None
    assert 60 <= len(acknowledged) < 80, len(acknowledged)
    second = pg_server(own_models_dir, tmp_path / "output", tmp_path / "second.log", postgres_url).start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as http:
            missing = [job_id for job_id in acknowledged if http.get(f"/queue/{job_id}").status_code != 200]
            assert missing == []
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("UPDATE sdcpp_restapi.schema_version SET version = 99", "written by a newer version of sdcpp-restapi"),
        (
            "DROP TABLE sdcpp_restapi.schema_version; CREATE TABLE sdcpp_restapi.schema_version (v TEXT)",
            "its schema sdcpp_restapi exists but was not made by sdcpp-restapi",
        ),
    ],
)
def test_a_database_it_cannot_use_stops_the_server_untouched(
    own_models_dir: Path, tmp_path: Path, postgres_url: str, tamper: str, message: str
) -> None:
    first = pg_server(own_models_dir, tmp_path / "output", tmp_path / "first.log", postgres_url).start()
    first.stop()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        for statement in tamper.split("; "):
            db.execute(statement)
    before = pg_schema(postgres_url)
    with pytest.raises(RuntimeError, match="server exited with 2") as refused:
        pg_server(own_models_dir, tmp_path / "output", tmp_path / "second.log", postgres_url).start()
    assert message in str(refused.value) and "The database was left untouched" in str(refused.value)
    assert pg_schema(postgres_url) == before


@pytest.mark.xfail(
    strict=False,
    reason="quarantined: since generation goes through the worker hosts (core/hosts/), a job running while the "
    "database restarts is recovered by the lost-host path, which once took longer than the test waits (CI "
    "2026-12-02; see the closing note)",
)
def test_a_stopped_database_answers_503_and_the_queue_resumes_with_nothing_lost(
    own_models_dir: Path, tmp_path: Path, postgres: PostgresServer, postgres_url: str
) -> None:
    server = pg_server(own_models_dir, tmp_path / "output", tmp_path / "server.log", postgres_url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.post("/models/load", json=TINY_LOAD).status_code == 200
            running = http.post("/txt2img", json={**CHEAP, "steps": 6}).json()["job_id"]
            postgres.stop()  # the job above ends (or ends soon) while its status cannot be written
            try:
                refused = http.post("/txt2img", json=CHEAP)
                assert refused.status_code == 503, refused.text
                assert refused.headers["Retry-After"] == "5"
                assert "the job store (PostgreSQL" in refused.json()["error"]
                assert "is unreachable" in refused.json()["error"]
                assert http.get("/queue").status_code == 503
            finally:
                postgres.start()
            wait_until(lambda: http.get("/queue").status_code == 200, timeout=30)  # 503s for a moment after
            assert wait_for_job(http, running)["status"] == "completed"  # its end was kept and written
            after = http.post("/txt2img", json=CHEAP)
            assert after.status_code == 202, after.text
            assert wait_for_job(http, after.json()["job_id"])["status"] == "completed"
    finally:
        server.stop()
    with psycopg.connect(postgres_url) as db:  # both endings are in the database, not only in the server's memory
        statuses = db.execute("SELECT job_id, status FROM sdcpp_restapi.jobs ORDER BY seq").fetchall()
    assert statuses == [(running, "completed"), (after.json()["job_id"], "completed")]


def import_store(output: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "litestar_app", "import-store", "--output-dir", str(output), *extra],
        cwd=REPO,
        env={"SDCPP_RESTAPI_STORE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_store_moves_a_real_servers_sqlite_store(
    own_models_dir: Path, tmp_path: Path, postgres_url: str
) -> None:
    output = tmp_path / "output"
    sqlite_server = ServerProcess(own_models_dir, output, tmp_path / "sqlite.log").start()
    try:
        with httpx.Client(base_url=sqlite_server.url, timeout=60) as http:
            assert http.post("/models/load", json=TINY_LOAD).status_code == 200
            job_id = http.post("/txt2img", json=CHEAP).json()["job_id"]
            assert wait_for_job(http, job_id)["status"] == "completed"
    finally:
        sqlite_server.stop()

    moved = import_store(output, postgres_url)
    assert moved.returncode == 0, moved.stderr
    assert f"imported {output / STORE} into {postgres_url}:" in moved.stdout
    assert "  jobs: 1 (completed 1)\n" in moved.stdout
    assert "  state values: " in moved.stdout and "  idempotent answers: 0\n" in moved.stdout

    again = import_store(output, postgres_url)
    assert again.returncode == 2 and "already holds 1 job(s); nothing was changed" in again.stderr
    merged = import_store(output, postgres_url, "--merge")
    assert merged.returncode == 0, merged.stderr
    assert "  jobs: 0\n" in merged.stdout and "jobs already in the target, kept as they are: 1" in merged.stdout

    server = pg_server(own_models_dir, output, tmp_path / "pg.log", postgres_url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            job = http.get(f"/queue/{job_id}").json()
            assert job["status"] == "completed" and (output / job["outputs"][0]).is_file()
            assert http.get("/health").json()["model_loaded"]  # the loaded model (a state value) came along
    finally:
        server.stop()
