"""Run a binary with its stdout passed straight through, logging when each chunk arrived.

    BENCH_TEE_LOG=/tmp/log BENCH_TEE_REAL=/path/sd-server python bench/timestamp_tee.py ARGS...

The log has one JSON line per chunk: {"t": time.time(), "text": chunk}. Used to measure how long a
progress bar takes from the binary to a WebSocket client.
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    with open(os.environ["BENCH_TEE_LOG"], "a", buffering=1) as log:
        child = subprocess.Popen([os.environ["BENCH_TEE_REAL"], *sys.argv[1:]], stdout=subprocess.PIPE)
        assert child.stdout is not None
        fd = child.stdout.fileno()
        while chunk := os.read(fd, 65536):
            os.write(1, chunk)
            log.write(json.dumps({"t": time.time(), "text": chunk.decode("utf-8", "replace")}) + "\n")
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
