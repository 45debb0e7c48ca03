"""CPU cost per scan of the model's own work (canonical view + forward pass), measured for this checkout
and, in the same run, for another one (the baseline), on the same scans:

    git worktree add /tmp/tenderscan-base c961825      # the code before issue 12
    python -m models.cost --baseline /tmp/tenderscan-base --json docs/model_cost.json

Process CPU time (user + system), one torch thread, so the figures hold on a shared machine: per scan,
the canonical view (`models.transforms.to_uint8`) on decoded JPEGs of the `default` preset and of the
robustness families, and the forward pass of the shipped checkpoint at batch 32 (per scan). Each tree
runs in its own subprocess, alternating, `--rounds` times; the medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

_CHILD = r"""
import io, json, os, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from PIL import Image
from models.checkpoint import load_checkpoint
from models.transforms import normalize, to_uint8
ckpt = load_checkpoint(os.path.join(sys.argv[1], "models/default/tenderscan-default.pt"))
params = ckpt.preprocess
corpus = [open(p, "rb").read() for p in sys.argv[2:]]
images = [Image.open(io.BytesIO(b)).convert("RGB") for b in corpus]
for im in images[:4]:
    to_uint8(im, params)
t = time.process_time()
xs = [to_uint8(im, params) for im in images]
view = (time.process_time() - t) / len(images) * 1000
x = normalize(torch.stack(xs[:32]), params)
with torch.inference_mode():
    for _ in range(3):
        ckpt.model(x)
    t = time.process_time()
    for _ in range(10):
        ckpt.model(x)
forward = (time.process_time() - t) / (10 * 32) * 1000
print(json.dumps({"view_ms": view, "forward_ms": forward, "symmetric": bool(getattr(ckpt.model.config, "symmetric", False))}))
"""


def corpus(folder: Path, per_family: int) -> list[str]:
    """JPEGs of the default preset and of every robustness family at the realistic strength."""
    from models.synth.conditions import FAMILIES
    from models.synth.dataset import folder_sink, generate

    paths = []
    for capture in ["default", *[f"family:{f}:realistic" for f in FAMILIES]]:
        d = folder / capture.replace(":", "_")
        generate(folder_sink(d), per_family, seed=4242, capture=capture, workers=1, progress=False)
        paths += sorted(str(p) for p in (d / "images").glob("*.jpg"))
    return paths


def main(argv: list[str] | None = None) -> int:
    import statistics
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m models.cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, required=True, help="another checkout (its models/ and default model)")
    ap.add_argument("--per-family", type=int, default=12, help="scans per capture kind in the corpus")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        files = corpus(Path(tmp), args.per_family)
        runs: dict[str, list[dict]] = {"current": [], "baseline": []}
        for _ in range(args.rounds):
            for name, root in (("baseline", args.baseline), ("current", here)):
                out = subprocess.run([sys.executable, "-c", _CHILD, str(root), *files], capture_output=True,
                                     text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {name: {k: round(statistics.median(r[k] for r in rs), 3) for k in ("view_ms", "forward_ms")}
           for name, rs in runs.items()}
    for m in med.values():
        m["total_ms"] = round(m["view_ms"] + m["forward_ms"], 3)
    result = {"command": "python -m models.cost " + " ".join(sys.argv[1:] if argv is None else argv),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "scans": len(files),
              "loadavg_1min": os.getloadavg()[0], "median": med, "runs": runs,
              "ratio_total": round(med["current"]["total_ms"] / med["baseline"]["total_ms"], 3)}
    print(json.dumps({k: result[k] for k in ("median", "ratio_total", "scans", "loadavg_1min")}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
