# Sourced by infra/gpu/run.sh and variants.sh: unpack .gpu/ (infra/gpu/bundle.sh) on the GPU machine and
# put weed, redis-server and the Python bundle on PATH / PYTHONPATH. REHEARSAL=1 (a CPU machine):
# keep this interpreter's packages, unpack only the services.
# Sets OUT (required: the results directory), PY (PYTHON or python3), T (where things unpack).
OUT=${OUT:?set OUT to the results directory}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
T=${TMPDIR:-/tmp}/tenderscan-gpu
mkdir -p "$T/bin" "$OUT"

"$PY" - "$T" "${REHEARSAL:-0}" <<'EOF'
import lzma, shutil, sys, tarfile
t, rehearsal = sys.argv[1], sys.argv[2] == "1"
for name in ("redis",) if rehearsal else ("site", "redis"):
    with tarfile.open(f".gpu/{name}.tar.xz") as tf:
        tf.extractall(t, filter="data")
with lzma.open(".gpu/weed.xz") as src, open(f"{t}/bin/weed", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
chmod +x "$T/bin/weed"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/redis/lib exec %s/redis/redis-server "$@"\n' "$T" "$T" >"$T/bin/redis-server"
chmod +x "$T/bin/redis-server"
export PATH="$T/bin:$PATH"
if [ "${REHEARSAL:-0}" = 1 ]; then export PYTHONPATH="$PWD"; else export PYTHONPATH="$T/site:$PWD"; fi
