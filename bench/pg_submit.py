"""Submissions per second on the PostgreSQL store (issue 21's target: 200 a second sustained without errors).

    python -m bench --only pg-submit

A private PostgreSQL server (tests/postgres.py: Debian's package, fsync off like the tests' cluster, so this is
the server's and the store's cost, not the disk's), the API on it with the tiny model loaded, then:
1. open loop: `POST /txt2img` paced at 200 a second for 10 s from 8 client threads: the rate reached, errors,
   median and 99th percentile response time;
2. closed loop: 8 threads submitting as fast as answers come for 5 s: the most it takes.
The same two against the SQLite store for comparison. The jobs run meanwhile (one step, 64x64): the submissions
compete with the work, as they would.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import httpx

from tests.postgres import PostgresServer, postgres_bindir
from tests.support import ServerProcess

BODY = {"prompt": "bench cat", "width": 64, "height": 64, "steps": 1}
THREADS = 8
TARGET_PER_S = 200
OPEN_S = 10.0
CLOSED_S = 5.0


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []

    def add(self, status: str, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if status == "202":
                self.accepted += 1
            else:
                self.errors[status] = self.errors.get(status, 0) + 1


def submit(http: httpx.Client, tally: Tally) -> None:
    started = time.perf_counter()
    try:
        status = str(http.post("/txt2img", json=BODY).status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    tally.add(status, time.perf_counter() - started)


def open_loop(url: str) -> tuple[Tally, float]:
    """Each thread sends its share at fixed times (200/s in all); a late answer delays only its own thread."""
    tally, period = Tally(), THREADS / TARGET_PER_S
    begin = time.perf_counter() + 0.2

    def client(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            n = 0
            while (due := begin + offset * period / THREADS + n * period) < begin + OPEN_S:
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                submit(http, tally)
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - begin


def closed_loop(url: str) -> tuple[Tally, float]:
    tally = Tally()
    begin = time.perf_counter()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.perf_counter() - begin < CLOSED_S:
                submit(http, tally)

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - begin


def report(label: str, tally: Tally, seconds: float) -> None:
    ordered = sorted(tally.latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    errors = ", ".join(f"{status}: {count}" for status, count in sorted(tally.errors.items())) or "none"
    print(
        f"  {label}: {tally.accepted / seconds:6.1f} accepted/s over {seconds:4.1f} s; errors {errors}; "
        f"response median {statistics.median(ordered) * 1000 if ordered else 0:.1f} ms, p99 {p99 * 1000:.1f} ms",
        flush=True,
    )


def measure(label: str, models: Path, work: Path, load: dict[str, str], env: dict[str, str]) -> None:
    config = work / f"{label}.toml"
    config.write_text("[limits]\nmax_pending = 100000\n")
    server = ServerProcess(models, work / f"output-{label}", work / f"{label}.log", "--config", str(config), env=env)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            http.put("/preview/settings", json={"enabled": False}).raise_for_status()
            http.post("/models/load", json=load).raise_for_status()
        print(f"{label} store:", flush=True)
        report(f"paced at {TARGET_PER_S}/s", *open_loop(server.url))
        report("as fast as answered", *closed_loop(server.url))
    finally:
        server.stop()


def run(models: Path, work: Path, load: dict[str, str]) -> None:
    bindir = postgres_bindir()
    if bindir is None:
        print("PostgreSQL is not installed (Debian: apt-get install postgresql): skipped", flush=True)
        return
    postgres = PostgresServer(bindir)
    try:
        postgres.start()
        measure("postgresql", models, work, load, {"SDCPP_RESTAPI_STORE_URL": postgres.new_database()})
    finally:
        postgres.remove()
    measure("sqlite", models, work, load, {})
