"""Many scans at once: a deterministic plan, two worker processes, a JSON-lines manifest.

Scan i of a data set with seed S is drawn from `np.random.default_rng([S, i])`, so it does not
depend on how the work is split between processes. The plan (which scans are counterfeit, and
with which severity) is fixed up front so that severities come in equal shares.

Manifest (`manifest.jsonl`): one JSON object per scan, in index order:
    file, index, seed, label, counterfeit, denomination, serial, serial_length, severity,
    signs {name: {severity, physical parameters...}}, capture {preset, parameters...},
    generator_version, width, height
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from models.synth.render import encode_jpeg, render_scan
from models.synth.signs import SEVERITIES

MANIFEST = "manifest.jsonl"
Sink = Callable[[str, bytes], None]  # (relative name, data) -> stored


def plan(count: int, seed: int, counterfeit_ratio: float = 0.5) -> list[tuple[bool, str | None]]:
    """Exactly round(count * ratio) counterfeits, severities cycling subtle/medium/obvious, shuffled."""
    n_cf = round(count * counterfeit_ratio)
    items = [(True, SEVERITIES[k % len(SEVERITIES)]) for k in range(n_cf)] + [(False, None)] * (count - n_cf)
    order = np.random.default_rng([seed, 2**31]).permutation(count)
    return [items[j] for j in order]


def make_item(task: tuple) -> tuple[int, bytes, dict]:
    """One scan as JPEG bytes plus its annotation. `task` = (seed, index, counterfeit, severity, capture)."""
    seed, index, counterfeit, severity, capture = task
    image, ann = render_scan(np.random.default_rng([seed, index]), counterfeit=counterfeit, severity=severity,
                             capture=capture)
    ann = {"file": f"images/{index:06d}.jpg", "index": index, "seed": seed, **ann}
    return index, encode_jpeg(image, ann["capture"]["jpeg_quality"]), ann


def _init_worker() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # the generator itself needs no torch
        pass


def iter_items(count: int, seed: int, counterfeit_ratio: float = 0.5, capture: str = "default",
               workers: int = 2, fn: Callable[[tuple], tuple] = make_item) -> Iterator[tuple]:
    """fn(task) for every scan, in index order, spread over `workers` processes."""
    tasks = [(seed, i, cf, sev, capture) for i, (cf, sev) in enumerate(plan(count, seed, counterfeit_ratio))]
    if workers <= 1:
        yield from map(fn, tasks)
        return
    ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(fn, tasks, chunksize=16)


def manifest_line(ann: dict) -> str:
    return json.dumps(ann, sort_keys=True, separators=(",", ":"))


def manifest_sha256(annotations: list[dict]) -> str:
    """sha256 of the manifest as written; identifies a data set in checkpoints."""
    h = hashlib.sha256()
    for ann in annotations:
        h.update(manifest_line(ann).encode() + b"\n")
    return h.hexdigest()


def folder_sink(root: str | Path) -> Sink:
    root = Path(root)

    def put(name: str, data: bytes) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return put


def generate(sink: Sink, count: int, seed: int, counterfeit_ratio: float = 0.5, capture: str = "default",
             workers: int = 2, progress: bool | None = None) -> list[dict]:
    """Write `count` scans and `manifest.jsonl` through `sink`; returns the annotations."""
    from tqdm import tqdm

    annotations = []
    items = iter_items(count, seed, counterfeit_ratio, capture, workers)
    for _, jpeg, ann in tqdm(items, total=count, desc="generate", unit="scan", disable=progress is False,
                             mininterval=1.0):
        sink(ann["file"], jpeg)
        annotations.append(ann)
    buf = io.StringIO()
    for ann in annotations:
        buf.write(manifest_line(ann) + "\n")
    sink(MANIFEST, buf.getvalue().encode())
    return annotations


def read_manifest(root: str | Path) -> list[dict]:
    with open(Path(root) / MANIFEST, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
