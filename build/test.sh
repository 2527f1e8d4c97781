#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine:
#   sudo bash build/test.sh
# Installs what is missing, builds the module warning-free, runs the C unit
# tests of the core, the integration tests against a real apache2 and, with
# no pytest arguments, the Debian package in the system's apache2
# (tests/package/system_layout.sh).
# OAIP_ASAN=1 builds the module with ASan+UBSan and preloads the runtime into
# apache2 only.
set -euo pipefail
cd "$(dirname "$0")/.."

bash build/deps.sh test

echo "== layers: the core free of httpd and curl, no include cycle"
/usr/bin/python3 build/check_layers.py
echo "== docs: every directive in README with its context; config create/merge complete"
/usr/bin/python3 build/check_docs.py

echo "== build"
make -f Makefile.apxs clean >/dev/null
if [[ ${OAIP_ASAN:-0} == 1 ]]; then
    make -f Makefile.apxs asan >/dev/null
    export OAIP_ASAN_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
else
    make -f Makefile.apxs >/dev/null
fi

echo "== unit tests (core, under ASan+UBSan)"
make -f Makefile.apxs unit

echo "== fuzz targets over their seed corpus (libFuzzer, ASan+UBSan)"
bash tests/fuzz/run.sh --replay

echo "== integration tests (apache2 + mock upstream)"
/usr/bin/python3 -m pytest -p no:cacheprovider -q tests/integration "$@"

if (($#)); then
    echo "== the Debian package in the system layout: not run with pytest arguments" \
         "(sudo bash tests/package/system_layout.sh runs it alone)"
    exit 0
fi
echo "== the Debian package in the system layout (build, install, a2enmod, serve, purge)"
rc=0
bash tests/package/system_layout.sh || rc=$?
((rc == 77)) && exit 0  # skipped, and it said why
exit "$rc"
