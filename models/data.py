"""Scans as training tensors: uint8 images [N, 3, H, W] plus targets, from a folder or synthesized.

Both paths decode the JPEG and call `transforms.canonical`, exactly as serving does; the float
normalisation (`transforms.normalize`) happens per batch. Targets per scan:
    counterfeit   float 0/1 (meaningful for kind "note" only)
    signs         float [S] 0/1, order of SIGN_NAMES
    denomination  long, index into DENOMINATIONS (-1 for a scan that is not one whole note)
    kind          long, index into KINDS: note, not_a_banknote, note_incomplete, multiple_notes
and what the locator saw, for the decision: geometry float [3] = (found, notes, visible_share).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.canonical import NoteGeometry
from models.synth import DENOMINATIONS, SIGN_NAMES
from models.synth.conditions import KINDS
from models.synth.dataset import iter_items, make_item, manifest_sha256, read_manifest
from models.transforms import PreprocessParams, canonical


@dataclass
class ScanSet:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    counterfeit: torch.Tensor  # float32 [N]
    signs: torch.Tensor  # float32 [N, S]
    denomination: torch.Tensor  # int64 [N], -1 where not one whole note
    annotations: list[dict]
    manifest_sha256: str
    kind: torch.Tensor | None = None  # int64 [N], index into KINDS
    geometry: torch.Tensor | None = None  # float32 [N, 3]: found, notes, visible_share

    def __post_init__(self) -> None:
        n = len(self.annotations)
        if self.kind is None:
            self.kind = torch.tensor([KINDS.index(a.get("kind", "note")) for a in self.annotations], dtype=torch.int64)
        if self.geometry is None:
            self.geometry = torch.tensor([[1.0, 1.0, 1.0]] * n, dtype=torch.float32).view(n, 3)

    def __len__(self) -> int:
        return len(self.annotations)

    @property
    def is_note(self) -> torch.Tensor:
        return self.kind == 0


def targets(ann: dict) -> tuple[float, list[float], int]:
    denom = ann.get("denomination")
    return (1.0 if ann["counterfeit"] else 0.0, [1.0 if s in ann["signs"] else 0.0 for s in SIGN_NAMES],
            DENOMINATIONS.index(denom) if denom in DENOMINATIONS and ann.get("kind", "note") == "note" else -1)


def geometry_row(geo: NoteGeometry) -> list[float]:
    return [1.0 if geo.found else 0.0, float(geo.notes), float(geo.visible_share)]


def from_arrays(arrays: list[np.ndarray], annotations: list[dict], geometry: list[list[float]] | None = None) -> ScanSet:
    t = [targets(a) for a in annotations]
    images = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
    geo = torch.tensor(geometry, dtype=torch.float32).view(len(t), 3) if geometry is not None else None
    return ScanSet(images=images, counterfeit=torch.tensor([x[0] for x in t], dtype=torch.float32),
                   signs=torch.tensor([x[1] for x in t], dtype=torch.float32).view(len(t), len(SIGN_NAMES)),
                   denomination=torch.tensor([x[2] for x in t], dtype=torch.int64), annotations=annotations,
                   manifest_sha256=manifest_sha256(annotations), geometry=geo)


def concat(*sets: ScanSet) -> ScanSet:
    """One ScanSet of several (the same preprocessing, so the same image size): synthetic data with
    reviewed scans mixed in (`tenderscan train --extra-data`)."""
    annotations = [a for s in sets for a in s.annotations]
    return ScanSet(images=torch.cat([s.images for s in sets]), counterfeit=torch.cat([s.counterfeit for s in sets]),
                   signs=torch.cat([s.signs for s in sets]), denomination=torch.cat([s.denomination for s in sets]),
                   annotations=annotations, manifest_sha256=manifest_sha256(annotations),
                   kind=torch.cat([s.kind for s in sets]), geometry=torch.cat([s.geometry for s in sets]))


def decode(data: bytes, params: PreprocessParams) -> np.ndarray:
    """Encoded scan -> uint8 [3, H, W] array, the way serving sees it."""
    return decode_with_geometry(data, params)[0]


def decode_with_geometry(data: bytes, params: PreprocessParams) -> tuple[np.ndarray, list[float]]:
    with Image.open(io.BytesIO(data)) as im:
        x, geo = canonical(im.convert("RGB"), params)
    return x.numpy(), geometry_row(geo)


def _synth_one(task: tuple, params: PreprocessParams) -> tuple[tuple[np.ndarray, list[float]], dict]:
    _, jpeg, ann = make_item(task)
    return decode_with_geometry(jpeg, params), ann


def _progress(it, total: int, desc: str, progress: bool | None):
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="scan", disable=progress is False, mininterval=1.0)


def synthesize(count: int, seed: int, params: PreprocessParams, counterfeit_ratio: float = 0.5,
               capture: str = "default", workers: int = 2, progress: bool | None = None,
               desc: str = "synthesize") -> ScanSet:
    """The same scans `tenderscan dataset generate` would write (same seed), kept in memory."""
    arrays, geos, anns = [], [], []
    fn = partial(_synth_one, params=params)
    for (arr, geo), ann in _progress(iter_items(count, seed, counterfeit_ratio, capture, workers, fn), count, desc,
                                     progress):
        arrays.append(arr)
        geos.append(geo)
        anns.append(ann)
    return from_arrays(arrays, anns, geos)


def _load_one(path: str, params: PreprocessParams) -> tuple[np.ndarray, list[float]]:
    return decode_with_geometry(Path(path).read_bytes(), params)


def load_folder(root: str | Path, params: PreprocessParams, workers: int = 2,
                progress: bool | None = None, keep: Callable[[dict], bool] | None = None) -> ScanSet:
    """A folder written by `tenderscan dataset generate` or `dataset from-reviews` (manifest.jsonl +
    images/); `keep` selects scans by their manifest line before any is decoded (`models.holdout`)."""
    root = Path(root)
    anns = [a for a in read_manifest(root) if keep is None or keep(a)]
    paths = [str(root / a["file"]) for a in anns]
    fn = partial(_load_one, params=params)
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            out = list(_progress(pool.imap(fn, paths, chunksize=32), len(paths), "load", progress))
    else:
        out = [fn(p) for p in _progress(paths, len(paths), "load", progress)]
    return from_arrays([a for a, _ in out], anns, [g for _, g in out])


def _synth_source_hash() -> str:
    """The generator's and the preprocessing's source: what shapes the cached pixels besides the params."""
    import hashlib

    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in [*sorted((here / "synth").glob("*.py")), here / "transforms.py", here / "canonical.py"]:
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cached_synthesize(cache_dir: str | Path | None, count: int, seed: int, params: PreprocessParams,
                      capture: str = "default", workers: int = 2, progress: bool | None = None,
                      desc: str = "synthesize") -> ScanSet:
    """`synthesize`, reusing a local cache keyed by everything that shapes the pixels (incl. generator and
    preprocessing source)."""
    import hashlib
    import json

    if cache_dir is None:
        return synthesize(count, seed, params, capture=capture, workers=workers, progress=progress, desc=desc)
    tag = hashlib.sha256(json.dumps(params.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    key = f"{count}-{seed}-{capture.replace(':', '_')}-{tag}-{_synth_source_hash()}.pt"
    path = Path(cache_dir) / key
    if path.is_file():
        blob = torch.load(path, weights_only=True)
        return from_arrays(list(blob["images"].numpy()), json.loads(blob["annotations"]), blob["geometry"].tolist())
    data = synthesize(count, seed, params, capture=capture, workers=workers, progress=progress, desc=desc)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"images": data.images, "annotations": json.dumps(data.annotations), "geometry": data.geometry},
               path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return data
