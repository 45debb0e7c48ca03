"""Throughput on this machine, with the load it was measured under:

    python -m models.benchmark [--scans 2000] [--workers 2] [--model models/default/tenderscan-default.pt] [--json OUT]

    generation   scans/s of `tenderscan dataset generate` (render + capture + JPEG + write, N processes)
    training     images/s of training steps (forward + backward + AdamW) at batch 64
    inference    images/s of `predict` at batch 32 (eval mode, inference_mode), after warm-up
    preprocess   ms per scan of the one preprocessing (rectify + flatten + normalise), one thread

Prints one JSON object. The 1-minute load average is recorded because the CPU may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.benchmark", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--train-batches", type=int, default=20)
    ap.add_argument("--model", default=None, help="checkpoint for the inference figure (default: a fresh network)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = ap.parse_args(argv)

    import torch

    from models.checkpoint import load_checkpoint
    from models.inference import predict
    from models.net import BillNet, NetConfig
    from models.synth.dataset import folder_sink, generate
    from models.transforms import PreprocessParams, preprocess_image

    torch.set_num_threads(args.threads)
    out: dict = {"command": "python -m models.benchmark " + " ".join(sys.argv[1:] if argv is None else argv),
                 "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu_count": os.cpu_count(),
                 "torch_threads": args.threads, "scans": args.scans, "loadavg_1min_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cpu0 = _cpu_s()
        generate(folder_sink(tmp), args.scans, seed=99, workers=args.workers, progress=False)
        wall_s = time.perf_counter() - t0
        out["generate_wall_s"] = round(wall_s, 3)
        out["generate_cpu_s"] = round(_cpu_s() - cpu0, 3)  # this process and its finished children
        out["generate_scans_per_s"] = round(args.scans / wall_s, 1)  # unrounded: a tiny run is not 0 s
    params = PreprocessParams()
    model = BillNet(NetConfig(num_kinds=4, symmetric=True)).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(64, 3, params.height, params.width).contiguous(memory_format=torch.channels_last)
    y, s, d = torch.randint(0, 2, (64,)).float(), torch.randint(0, 2, (64, 5)).float(), torch.randint(0, 4, (64,))
    for i in range(args.train_batches + 2):
        if i == 2:
            t0 = time.perf_counter()
        a, b, c, *_ = model(x)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(a, y)
                + torch.nn.functional.binary_cross_entropy_with_logits(b, s) + torch.nn.functional.cross_entropy(c, d))
        opt.zero_grad()
        loss.backward()
        opt.step()
    out["train_images_per_s"] = round(64 * args.train_batches / (time.perf_counter() - t0), 1)
    if args.model:
        ckpt = load_checkpoint(args.model)
    else:
        from models.checkpoint import Checkpoint
        from models.decision import Thresholds

        ckpt = Checkpoint(model=BillNet(NetConfig()).eval(), name="", version="", weights_sha256="", sign_names=[],
                          denominations=[], preprocess=params, thresholds=Thresholds())
    xb = torch.randn(32, 3, params.height, params.width)
    for _ in range(2):
        predict(ckpt, xb)
    t0 = time.perf_counter()
    for _ in range(20):
        predict(ckpt, xb)
    out["infer_images_per_s_batch32"] = round(32 * 20 / (time.perf_counter() - t0), 1)
    from models.synth import render_scan

    images = [render_scan(i, capture="default")[0] for i in range(64)]
    t0 = time.perf_counter()
    for image in images:
        preprocess_image(image, params)
    out["preprocess_ms_per_scan"] = round((time.perf_counter() - t0) / len(images) * 1000, 2)
    out["loadavg_1min_end"] = os.getloadavg()[0]
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    return 0


def _cpu_s() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    sys.exit(main())
