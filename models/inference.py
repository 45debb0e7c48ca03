"""The forward pass for serving and evaluation: normalized batch in, probabilities out."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.checkpoint import Checkpoint


@dataclass(frozen=True)
class Predictions:
    p_counterfeit: torch.Tensor  # [B] probability the note is counterfeit (calibrated: the checkpoint's temperature)
    signs: torch.Tensor  # [B, S] probability of each tell-tale sign (order: ckpt.sign_names)
    denomination: torch.Tensor  # [B, D] softmax over ckpt.denominations
    kind: torch.Tensor | None = None  # [B, K] softmax over KINDS (note, not_a_banknote, ...); None for old models
    ood: torch.Tensor | None = None  # [B] how unlike the training notes the scan is (Mahalanobis, models.calibrate)

    def __len__(self) -> int:
        return int(self.p_counterfeit.shape[0])


def predict(ckpt: Checkpoint, x: torch.Tensor) -> Predictions:
    """x: float32 [B, 3, H, W] from `preprocess_image`, on the model's device. Outputs are float32.

    On CUDA the forward pass runs under bf16 autocast; on CPU in float32. The counterfeit and kind
    logits are divided by the temperatures the checkpoint was calibrated with.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a batch [B, 3, H, W], got {tuple(x.shape)}")
    model = ckpt.model
    with torch.inference_mode():
        if x.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
        else:
            out = model(x)
        return from_outputs(ckpt, out)


def from_outputs(ckpt: Checkpoint, out) -> Predictions:
    """The network's logits -> calibrated probabilities and the out-of-distribution score."""
    th = ckpt.thresholds
    kind = out.kind
    return Predictions(
        p_counterfeit=torch.sigmoid(out.counterfeit.float() / th.temperature),
        signs=torch.sigmoid(out.signs.float()),
        denomination=torch.softmax(out.denomination.float(), dim=1),
        kind=None if kind is None else torch.softmax(kind.float() / th.kind_temperature, dim=1),
        ood=None if ckpt.ood is None else ckpt.ood.score(out.features.float()),
    )
