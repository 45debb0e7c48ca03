#!/usr/bin/env bash
# The second GPU call: what the first (run.sh) cut short, and the drain under other worker settings.
#   bench_gpu2.json    drain + naive prefork + open loop, default settings, one run (same-run ratio)
#   variant_*.json     the 16-process drain again with one setting changed (the `bench variant_*` lines at the end)
# Usage, from the repository root:  OUT=/some/dir infra/gpu/variants.sh    (REHEARSAL=1 as in run.sh)
set -u
. infra/gpu/env.sh  # OUT, PY, PATH, PYTHONPATH
if [ "${REHEARSAL:-0}" = 1 ]; then n=600; loads=0.3; step=4; else n=6000; loads=0.2,0.5,0.8; step=8; fi

bench() {  # bench NAME [ENV=VALUE ...] -- BENCH ARGS
    local name=$1; shift; local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
    echo "== $name ${envs[*]}"
    env "${envs[@]}" timeout 200 "$PY" -m producer.cli bench --scans "$n" "$@" --json "$OUT/$name.json" --plot "" \
        >"$OUT/$name.log" 2>&1
    echo "rc=$?"; grep -E '^\| (tenderscan|naive)|^\| [0-9]' "$OUT/$name.log"
}
bench bench_gpu2 -- --only drain,naive_prefork,open_loop --loads "$loads" --step-seconds "$step"
bench variant_c16 TENDERSCAN_WORKER_CONCURRENCY=16 -- --only drain
bench variant_p24 -- --only drain --worker-processes 24
