"""A private PostgreSQL server for the tests: Debian's `postgresql` package (initdb, pg_ctl), a cluster in a temporary
folder (outside pytest's root-only tmp tree: the `postgres` user must reach it) listening on a free loopback port, trust authentication for the loopback only. Started once per test session
by the `postgres` fixture (tests/conftest.py); each test takes a fresh database from it. Where PostgreSQL is not
installed the tests that need it are skipped with the reason (`.ci/run` installs it, so CI runs them).

As root (CI containers), initdb refuses to run: the cluster then runs as the `postgres` system user the Debian
package creates, and the folder is handed to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

PACKAGE_HINT = "PostgreSQL is not installed (Debian: apt-get install postgresql); .ci/run installs it"


def postgres_bindir() -> Path | None:
    """The folder of initdb / pg_ctl / postgres: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One cluster: `start`, `stop` (a fast shutdown; the fault tests stop and restart it mid-queue), `new_database`."""

    def __init__(self, bindir: Path) -> None:
        root = self.root = Path(tempfile.mkdtemp(prefix="sdcpp-restapi-pg-"))
        self.bindir = bindir
        self.data = root / "pgdata"
        self.sockets = root / "sockets"
        self.port = _free_port()
        self.log = root / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError("running as root needs the `postgres` user (Debian's postgresql package)") from exc
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.sockets.mkdir()
        if self._as_user:
            shutil.chown(root, "postgres")
            shutil.chown(self.sockets, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as_user, str(self.bindir / tool), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        """Stop it if it runs, and delete the cluster's folder."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL of the postmaster (a crash, not a shutdown)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 9)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        subprocess.run(
            [str(self.bindir / "psql"), "-q", "-d", self.admin_url, "-c", f"CREATE DATABASE {name}"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )
        return self.url(name)
