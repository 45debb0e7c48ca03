"""The forward pass for serving and evaluation: normalized batch in, probabilities out."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.checkpoint import Checkpoint


@dataclass(frozen=True)
class Predictions:
    p_counterfeit: torch.Tensor  # [B] probability the note is counterfeit
    signs: torch.Tensor  # [B, S] probability of each tell-tale sign (order: ckpt.sign_names)
    denomination: torch.Tensor  # [B, D] softmax over ckpt.denominations

    def __len__(self) -> int:
        return int(self.p_counterfeit.shape[0])


def predict(ckpt: Checkpoint, x: torch.Tensor) -> Predictions:
    """x: float32 [B, 3, H, W] from `preprocess_image`, on the model's device. Outputs are float32.

    On CUDA the forward pass runs under bf16 autocast; on CPU in float32.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a batch [B, 3, H, W], got {tuple(x.shape)}")
    model = ckpt.model
    with torch.inference_mode():
        if x.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logit_cf, logit_signs, logit_denom = model(x)
        else:
            logit_cf, logit_signs, logit_denom = model(x)
        return Predictions(
            p_counterfeit=torch.sigmoid(logit_cf.float()),
            signs=torch.sigmoid(logit_signs.float()),
            denomination=torch.softmax(logit_denom.float(), dim=1),
        )
