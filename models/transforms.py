"""The one preprocessing module: a decoded scan (PIL, any size) -> the model's input tensor.

Training, evaluation and serving all go through here, in two stages so that training can cache
the cheap-to-store stage:

    canonical(image, params)  PIL RGB [h, w]  -> (uint8 tensor [3, H, W], NoteGeometry): the canonical view at
                              the model's size (note found by its corners, straightened, colour balanced,
                              lighting flattened; `models.canonical`) and what the locator saw
    to_uint8(image, params)   the same without the geometry
    normalize(x, params)      uint8 [..., 3, H, W] -> float32, (x / 255 - mean) / std
    preprocess_image = normalize(to_uint8(...))

The parameters travel inside every checkpoint (`PreprocessParams.to_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from models.canonical import NO_NOTE, NoteGeometry, canonical_view

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "box": Image.Resampling.BOX}


@dataclass(frozen=True)
class PreprocessParams:
    height: int = 64  # model input rows
    width: int = 144  # model input columns: the note's own aspect, 9:4 (576 x 256 source pixels)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per channel, on the 0..1 scale
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    resample: str = "bilinear"  # Pillow filter used to resize (antialiased when shrinking)
    canonicalize: bool = True  # the note's canonical view (models.canonical) instead of resizing the whole scan
    white_balance: bool = True  # the paper's colour balanced to neutral in the canonical view

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessParams:
        return cls(height=int(d["height"]), width=int(d["width"]), mean=tuple(float(v) for v in d["mean"]),
                   std=tuple(float(v) for v in d["std"]), resample=str(d.get("resample", "bilinear")),
                   canonicalize=bool(d.get("canonicalize", False)),
                   white_balance=bool(d.get("white_balance", False)))


def canonical(image: Image.Image, params: PreprocessParams) -> tuple[torch.Tensor, NoteGeometry]:
    """Any-size image -> (uint8 [3, H, W], what the locator saw). The geometry goes to the decision:
    a scan of several notes, or of a fragment of one, is rejected whatever the network says."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if params.canonicalize:
        pixels, geo = canonical_view(image, params.height, params.width, balance=params.white_balance)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))), geo
    if image.size != (params.width, params.height):
        image = image.resize((params.width, params.height), _RESAMPLE[params.resample])
    return torch.from_numpy(np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))), NO_NOTE


def to_uint8(image: Image.Image, params: PreprocessParams) -> torch.Tensor:
    """Any-size image -> uint8 [3, H, W] (the canonical view without its geometry)."""
    return canonical(image, params)[0]


def normalize(x: torch.Tensor, params: PreprocessParams) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32 [..., 3, H, W] (works on any device)."""
    mean = torch.tensor(params.mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(params.std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x.to(torch.float32) / 255.0 - mean) / std


def preprocess_image(image: Image.Image, params: PreprocessParams) -> torch.Tensor:
    """PIL image (RGB, any size) -> float32 [3, H, W]. The only preprocessing tenderscan uses."""
    return normalize(to_uint8(image, params), params)
