#!/usr/bin/env bash
# Builds the libFuzzer targets of the core (clang, -fsanitize=fuzzer,address,
# undefined) and runs them.
#   tests/fuzz/run.sh [TARGET...]           fuzz each target FUZZ_SECONDS (default 60)
#   tests/fuzz/run.sh --replay [TARGET...]  run each target once over its seed corpus
#   make -f Makefile.apxs fuzz FUZZ_SECONDS=N
# Targets: request sse origin upstream_error values endpoint multipart secret_mask token_estimate
# (default: all).
# Fuzzing is single-process (-jobs=1 -workers=1). New inputs go to
# build/out/fuzz/corpus/TARGET (the seeds in tests/fuzz/corpus/TARGET are only
# read); a crash is saved in build/out/fuzz/artifacts/TARGET/ and its path
# printed: add it to the seed corpus once the bug is fixed. tests/fuzz/dict/TARGET.dict
# (tokens of JSON, SSE, origins...) is passed with -dict.
# Needs (Debian 12): clang, libclang-rt-14-dev, libapr1-dev, libaprutil1-dev,
# libjansson-dev.
set -euo pipefail
cd "$(dirname "$0")/../.."

ALL_TARGETS=(request sse origin upstream_error values endpoint multipart secret_mask
             token_estimate content_scan sse_framer)
SECONDS_EACH=${FUZZ_SECONDS:-60}
CC_FUZZ=${CC_FUZZ:-clang}
OUT=build/out/fuzz
SRC=mod_openai_proxy
CORE=("$SRC"/core/*.c)
# A short SSE event limit lets small inputs reach the reader's overflow paths.
SSE_LIMIT=-DOAIP_SSE_MAX_EVENT_DATA=64

replay=0
if [[ ${1:-} == --replay ]]; then
    replay=1
    shift
fi
targets=("$@")
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")

missing() {
    echo "run.sh: $1 is missing; on Debian 12: apt-get install $2" >&2
    exit 2
}
command -v "$CC_FUZZ" >/dev/null || missing "$CC_FUZZ" clang
command -v apr-1-config >/dev/null || missing apr-1-config libapr1-dev
command -v apu-1-config >/dev/null || missing apu-1-config libaprutil1-dev
[[ -f /usr/include/jansson.h ]] || missing jansson.h libjansson-dev
mkdir -p "$OUT"
probe=$OUT/probe
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$probe.c"
if ! "$CC_FUZZ" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" 2>"$probe.log"; then
    cat "$probe.log" >&2
    missing "libFuzzer (libclang_rt.fuzzer)" libclang-rt-14-dev
fi

read -r -a apr_cflags <<<"$(apr-1-config --cflags --cppflags --includes)"
read -r -a apr_libs <<<"$(apr-1-config --link-ld --libs) $(apu-1-config --link-ld)"

build() {
    local t=$1 extra=()
    [[ $t == sse ]] && extra=("$SSE_LIMIT")
    [[ $t == sse_framer ]] && extra=(-DOAIP_SSE_FRAMER_MAX_EVENT=64)
    "$CC_FUZZ" -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        "${extra[@]}" -I"$SRC" "${apr_cflags[@]}" -o "$OUT/fuzz_$t" \
        "tests/fuzz/fuzz_$t.c" "${CORE[@]}" "${apr_libs[@]}" -ljansson
}

status=0
for t in "${targets[@]}"; do
    [[ -f tests/fuzz/fuzz_$t.c ]] || { echo "run.sh: no target $t (${ALL_TARGETS[*]})" >&2; exit 2; }
    build "$t"
    seeds=tests/fuzz/corpus/$t
    if ((replay)); then
        files=("$seeds"/*)
        if "$OUT/fuzz_$t" "${files[@]}" >"$OUT/replay_$t.log" 2>&1; then
            echo "replay $t: ${#files[@]} inputs ok"
        else
            echo "replay $t: FAILED (log: $OUT/replay_$t.log)"
            tail -n 30 "$OUT/replay_$t.log"
            status=1
        fi
        continue
    fi
    mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t" "$OUT/work/$t"
    log=$PWD/$OUT/work/$t/fuzz-0.log # -jobs=1 runs one child that logs there
    echo "== fuzz $t for ${SECONDS_EACH}s (log: $log)"
    dict=()
    [[ -f tests/fuzz/dict/$t.dict ]] && dict=(-dict="../../../../../tests/fuzz/dict/$t.dict")
    if (cd "$OUT/work/$t" && "../../fuzz_$t" -max_total_time="$SECONDS_EACH" -jobs=1 \
        -workers=1 -print_final_stats=1 -artifact_prefix="../../artifacts/$t/" "${dict[@]}" \
        "../../corpus/$t" "../../../../../$seeds") >"$OUT/work/$t/parent.log" 2>&1; then
        # libFuzzer's last status line: runs, cov: (edges), ft: (features), exec/s
        { grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true; } | tail -n 1
        grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true
    else
        echo "fuzz $t: FAILED"
        { grep -E 'invariant broken|ERROR: |runtime error|Test unit written' -A3 "$log" || true; } |
            head -n 30
        status=1
    fi
done
exit $status
