"""Issue 14, the lever "reduced DCT decode": the shipped model's decisions and the decode + canonical
view's CPU, full decode against reduced decode, on synthetic scans made 3x larger (the scanner's own
640 x 288 scans cannot be reduced at all). Runs only at the commit that had the lever (docs/PERFORMANCE.md):

    PYTHONPATH=. .venv/bin/python docs/history/reduced_decode_check.py
"""

import contextlib
import time
from collections import Counter

import torch

from models.synth import make_scans
from tests.workers.runtime.test_runner import DEFAULT_MODEL, REDUCED_DECODE_SCANS, _judge_all, _larger_capture
from workers.core import imaging
from workers.core.settings import Settings
from workers.runtime.runner import load_model

torch.set_num_threads(1)
model = load_model(Settings().with_(model=str(DEFAULT_MODEL), device="cpu"))
print("model", model.ref)
scans = [_larger_capture(d) for d, _ in make_scans(REDUCED_DECODE_SCANS, seed=1414)]
full = _judge_all(model, scans, None)
red = _judge_all(model, scans, model.decode_long_side)
same = sum(f[:2] == r[:2] for f, r in zip(full, red, strict=True))
dp = [abs(f[2] - r[2]) for f, r in zip(full, red, strict=True) if f[2] is not None and r[2] is not None]
print("same", same, "of", len(scans), "max|dp|", max(dp), "mean|dp|", sum(dp) / len(dp),
      Counter(f[0] for f in full), Counter(r[0] for r in red))
print("diffs", [(f[:2], r[:2]) for f, r in zip(full, red, strict=True) if f[:2] != r[:2]])
limits = imaging.Limits()
for long_side in (None, model.decode_long_side):  # CPU per scan of this thread, 60 scans each way
    t, decode_s = time.thread_time(), 0.0
    for data in scans[:60]:
        t0 = time.thread_time()
        image, _ = imaging.decode(data, limits, long_side=long_side)
        decode_s += time.thread_time() - t0
        with contextlib.suppress(Exception):  # a geometry rejection costs what it cost
            model.preprocess(image)
    print("long_side", long_side, "decode ms/scan", round(1000 * decode_s / 60, 3),
          "decode+canonical ms/scan", round(1000 * (time.thread_time() - t) / 60, 3))
