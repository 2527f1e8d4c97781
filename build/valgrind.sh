#!/usr/bin/env bash
# The integration suite with apache2 under valgrind (memcheck):
#   sudo bash build/valgrind.sh [pytest args]
# Builds the module (plain build, with debug info), runs every test that can
# run in one process with apache2 as `valgrind ... apache2 -X` (see
# tests/integration/valgrind.py; tests that need several processes or
# real-time speed are skipped with the reason), and fails on a memcheck
# error or on a definite/indirect leak with a frame in mod_openai_proxy.
# Suppressions for library noise: tests/valgrind.supp. The reports stay in
# the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."

bash build/deps.sh test
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends valgrind; }

echo "== build"
make -f Makefile.apxs clean >/dev/null
make -f Makefile.apxs >/dev/null

# the session's work directory goes below this one (pytest's fixture uses
# tempfile), so that the reports can be checked once every httpd has ended
work=$(mktemp -d /tmp/oaip-valgrind-XXXXXX)
chmod 755 "$work"
# the run is long: apache2 loads a copy of the module, so that a rebuild in
# the tree meanwhile (another test run) cannot change it under the tests
cp mod_openai_proxy/.libs/mod_openai_proxy.so "$work/"
chmod 644 "$work/mod_openai_proxy.so"
echo "== integration tests, apache2 under valgrind (reports in $work)"
set +e
TMPDIR="$work" OAIP_VALGRIND=1 OAIP_KEEP_WORKDIR=1 OAIP_MODULE="$work/mod_openai_proxy.so" \
    /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs tests/integration "$@"
tests=$?
echo "== valgrind reports"
/usr/bin/python3 tests/integration/valgrind.py "$work"
reports=$?
set -e
exit $((tests != 0 ? tests : reports))
