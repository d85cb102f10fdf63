#!/bin/sh
# sd-server stand-in for the latency benchmark: the real binary behind a timestamping pass-through.
exec "$BENCH_PYTHON" "$(dirname "$0")/timestamp_tee.py" "$@"
