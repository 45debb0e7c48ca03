#!/usr/bin/env bash
# The prepared GPU check (issue #5 item 5), one call on a borrowed machine with an NVIDIA GPU and a bare
# CUDA image: python3 with torch, but no package registry, no Redis and no S3 server. It unpacks .gpu/
# (built here by infra/gpu/bundle.sh), then writes under $OUT, in this order:
#   env.txt          GPU, driver, torch, the unpacked services' versions, an import check
#   test_cuda.txt    tests/test_cuda.py: pinned copies, channels-last, bf16 autocast, warm-up and the
#                    batcher on CUDA against the CPU float32 answer (torch.compile last, after the bench)
#   bench_gpu.json   `tenderscan bench` with GPU-sized runs, rewritten after each contender; bench.log,
#   bench_gpu.png    the markdown table, logs_tail.txt (the last lines of every service's log)
# Usage, from the repository root:  OUT=/some/dir infra/gpu/run.sh
#   BENCH_TIMEOUT_S  stop the benchmark after this many seconds (default 330); what it measured stays
#   REHEARSAL=1      on a CPU machine: skip the Python bundle (use this interpreter's packages), small runs
set -u
. infra/gpu/env.sh  # OUT, PY, PATH, PYTHONPATH
if [ "${REHEARSAL:-0}" = 1 ]; then
    sizes=(--scans 600 --solo-scans 200 --work-scans 400 --ceiling-scans 1500 --batch-sizes 1,32,64
           --model-seconds 1 --loads 0.3 --step-seconds 4)
else
    sizes=(--scans 6000 --solo-scans 1500 --work-scans 3000 --ceiling-scans 6000
           --batch-sizes 1,8,32,64,128,256,512 --loads 0.2,0.5,0.8 --step-seconds 8)
fi

{
    date -u; nvidia-smi || true; echo "cores: $(nproc)"; free -g
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
    redis-server --version; weed version
    "$PY" -c "import celery, kombu, boto3, fastapi, uvicorn, structlog, cryptography, redis, prometheus_client
import producer.app, workers.runtime.pipeline, workers.core.celery_app
print('imports ok, celery', celery.__version__)"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== CUDA paths (tests/test_cuda.py, torch.compile after the bench)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "not compiled" -rs 2>&1 | tee "$OUT/test_cuda.txt" | tail -4

echo "== tenderscan bench"
timeout "${BENCH_TIMEOUT_S:-330}" "$PY" -m producer.cli bench "${sizes[@]}" \
    --json "$OUT/bench_gpu.json" --plot "$OUT/bench_gpu.png" >"$OUT/bench.log" 2>&1
echo "bench rc=$?" | tee -a "$OUT/bench.log"
grep -v '^{' "$OUT/bench.log" | tail -60
for f in "${TMPDIR:-/tmp}"/tenderscan-bench-*/logs/*; do echo "== $f"; tail -n 15 "$f"; done >"$OUT/logs_tail.txt" 2>&1

echo "== torch.compile"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py -k compiled -rs 2>&1 | tee -a "$OUT/test_cuda.txt" | tail -3
