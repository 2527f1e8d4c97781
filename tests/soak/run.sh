#!/usr/bin/env bash
# The soak: N mixed requests (default 100,000) against one httpd with the
# module and the mock upstream; see tests/soak/soak.py for what is measured.
#   sudo bash tests/soak/run.sh [N]
# A full run (N >= 100000) writes its figures to tests/soak/results/latest.md.
# Exits non-zero when a request was not answered as expected, the access log
# misses a line, the error log has unexpected warn/error lines or an httpd
# process died. Memory growth is reported, not judged (read the figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-100000}

bash build/deps.sh test
make -f Makefile.apxs >/dev/null

out=()
if ((n >= 100000)); then
    out=(--out tests/soak/results/latest.md)
fi
OAIP_SOAK_COMMAND="bash tests/soak/run.sh $n" \
    exec /usr/bin/python3 tests/soak/soak.py -n "$n" "${out[@]}"
