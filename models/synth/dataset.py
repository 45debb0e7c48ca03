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

from models.synth.render import GENERATOR_VERSION, render_scan
from models.synth.scene import encode
from models.synth.signs import SEVERITIES

MANIFEST = "manifest.jsonl"
Sink = Callable[[str, bytes], None]  # (relative name, data) -> stored


def plan(count: int, seed: int, counterfeit_ratio: float = 0.5) -> list[tuple[bool, str | None]]:
    """Exactly round(count * ratio) counterfeits, severities cycling subtle/medium/obvious, shuffled."""
    n_cf = round(count * counterfeit_ratio)
    items = [(True, SEVERITIES[k % len(SEVERITIES)]) for k in range(n_cf)] + [(False, None)] * (count - n_cf)
    order = np.random.default_rng([seed, 2**31]).permutation(count)
    return [items[j] for j in order]


MIX_PRESET, MIX_NEGATIVE = 0.22, 0.12  # the training mixture: scanner-preset scans, negatives, the rest scenes


def capture_kinds() -> list[str]:
    """Every `capture` a data set can be made of (`tenderscan dataset generate --capture`)."""
    from models.synth.capture import PRESETS
    from models.synth.conditions import FAMILIES, NEGATIVES_TEST, NEGATIVES_TRAIN, STRENGTHS

    return ([*PRESETS, "mix", "valmix", "negatives:train", "negatives:test"]
            + [f"family:{f}:{s}" for f in FAMILIES for s in STRENGTHS]
            + [f"negative:{k}" for k in [*NEGATIVES_TRAIN, *NEGATIVES_TEST]])


def render_item(rng: np.random.Generator, capture: str, counterfeit: bool, severity: str | None):
    """One scan (PIL image, annotation) of any capture kind:

        clean | default | harsh       a scanner preset (capture.py)
        family:NAME:STRENGTH          one robustness family at a named strength (conditions.py)
        mix                           the training mixture: presets, scenes of 0-3 families, negatives
        valmix                        the validation mixture: presets, single families, negatives
        negatives:train|test          a negative of a kind drawn from that split
        negative:KIND                 one negative kind
    """
    from models.synth import conditions as cond
    from models.synth.capture import PRESETS
    from models.synth.render import render_note, sample_note

    def make_note(r: np.random.Generator) -> np.ndarray:
        return render_note(sample_note(r, counterfeit=bool(r.random() < 0.5)))

    if capture in PRESETS:
        image, ann = render_scan(rng, counterfeit=counterfeit, severity=severity, capture=capture)
        return image, {"kind": "note", **ann}
    if capture in ("mix", "valmix"):
        u = rng.random()
        if u < MIX_PRESET:
            image, ann = render_scan(rng, counterfeit=counterfeit, severity=severity, capture="default")
            return image, {"kind": "note", **ann}
        if u > 1 - MIX_NEGATIVE:
            return cond.negative_scan(rng, str(rng.choice(sorted(cond.NEGATIVES_TRAIN))), make_note)
        c = cond.training_condition(rng) if capture == "mix" else cond.validation_condition(rng)
    elif capture.startswith("negatives:"):
        kinds = cond.NEGATIVES_TRAIN if capture == "negatives:train" else cond.NEGATIVES_TEST
        return cond.negative_scan(rng, str(rng.choice(sorted(kinds))), make_note)
    elif capture.startswith("negative:"):
        return cond.negative_scan(rng, capture.split(":", 1)[1], make_note)
    elif capture.startswith("family:"):
        _, family, strength = capture.split(":")
        c = cond.family_condition(rng, family, strength)
    else:
        raise ValueError(f"unknown capture {capture!r}; choose from {', '.join(capture_kinds()[:6])}, "
                         "family:NAME:STRENGTH, negative:KIND")
    spec = sample_note(rng, counterfeit, severity)
    image, info = cond.scene_scan(render_note(spec), c)
    visible = info.get("visible_share") or 1.0
    kind = "note" if visible >= cond.MIN_VISIBLE else "note_incomplete"  # a family can hide too much of it
    return image, {"kind": kind, "label": "counterfeit" if spec.counterfeit else "genuine",
                   "counterfeit": spec.counterfeit, "denomination": spec.denomination, "serial": spec.serial,
                   "serial_length": len(spec.serial), "severity": spec.severity, "signs": spec.signs,
                   "capture": {"preset": "scene", **c}, "visible_share": info.get("visible_share"),
                   "generator_version": GENERATOR_VERSION, "width": image.width, "height": image.height}


def make_item(task: tuple) -> tuple[int, bytes, dict]:
    """One scan as JPEG bytes plus its annotation. `task` = (seed, index, counterfeit, severity, capture)."""
    seed, index, counterfeit, severity, capture = task
    image, ann = render_item(np.random.default_rng([seed, index]), capture, counterfeit, severity)
    ann = {"file": f"images/{index:06d}.jpg", "index": index, "seed": seed, **ann}
    c = ann["capture"]
    data = encode(image, c.get("jpeg_quality", 90), c.get("resample", 1.0), c.get("sharpen", 0.0))
    return index, data, ann


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
