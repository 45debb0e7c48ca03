"""BillNet: a compact CNN with four heads, so that every verdict can say why.

    x [B, 3, 64, 144]
    stem        conv 3x3 /2                        -> [B, c0, 32, 72]
    stage k     ConvBlock /2 + ConvBlock           -> channels c_k, spatial halved each stage
    global      concat(global avg, global max)     -> [B, 2 * c_last]
    local       1x1 conv to c_local, avg-pooled to a fixed grid, flattened -> [B, c_local * gh * gw]
    trunk       Linear + ReLU on concat(global, local)                   -> features [B, hidden]
    heads       counterfeit [B]  signs [B, S]  denomination [B, D]  kind [B, K]   (logits)

`kind` says what the scan shows: one whole note of ours, not a banknote, a fragment of a note, or
several notes (models.synth.conditions.KINDS). The canonical view turns a note level and landscape
but cannot tell upside down from upright; the network sees both in training, and in eval mode with
`symmetric` it averages its logits (and features) over the view and the view turned 180°, so an
upside-down note scores exactly like an upright one.

Scans are roughly aligned (a few degrees, a few percent), so *where* a feature sits matters: the
watermark window, the thread and the end of the serial box have fixed places per denomination.
The local branch keeps that layout; global max pooling lets one small defect anywhere count;
average pooling carries overall colour and print quality. Sizes follow `NetConfig`, stored in every
checkpoint so the loader rebuilds the same network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class NetConfig:
    num_signs: int = 5
    num_denominations: int = 4
    stem: int = 16  # channels after the stem
    stages: tuple[int, ...] = (32, 64, 128, 192)  # channels per stage; each stage halves H and W
    local: int = 16  # channels of the position-keeping branch
    grid: tuple[int, int] = (4, 8)  # its pooled grid (rows, columns)
    hidden: int = 128
    dropout: float = 0.1
    num_kinds: int = 0  # the kind head's classes (0: no kind head, as in checkpoints before it)
    symmetric: bool = False  # eval mode: average over the view and the view turned 180°
    extra: dict = field(default_factory=dict)  # free-form notes, ignored by the network

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"], d["grid"] = list(self.stages), list(self.grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        d = dict(d)
        d["stages"], d["grid"] = tuple(d["stages"]), tuple(d["grid"])
        return cls(**d)


class Outputs(NamedTuple):
    counterfeit: torch.Tensor  # [B] logit
    signs: torch.Tensor  # [B, S] logits
    denomination: torch.Tensor  # [B, D] logits
    kind: torch.Tensor | None  # [B, K] logits, None without a kind head
    features: torch.Tensor  # [B, hidden]: the trunk's output (the out-of-distribution score reads it)


class ConvBlock(nn.Module):
    """conv 3x3 -> BatchNorm -> ReLU, optionally with stride 2."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Stage(nn.Module):
    """Downsample by 2, then one more block with a residual connection."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.down = ConvBlock(cin, cout, stride=2)
        self.body = ConvBlock(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)  # [B, cout, H/2, W/2]
        return x + self.body(x)


class BillNet(nn.Module):
    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = ConvBlock(3, config.stem, stride=2)
        chans = [config.stem, *config.stages]
        self.stages = nn.Sequential(*[Stage(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True)])
        self.local = nn.Sequential(nn.Conv2d(chans[-1], config.local, 1, bias=False), nn.BatchNorm2d(config.local),
                                   nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(config.grid))
        width = 2 * chans[-1] + config.local * config.grid[0] * config.grid[1]
        self.trunk = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, config.hidden), nn.ReLU(inplace=True),
                                   nn.Dropout(config.dropout))
        self.counterfeit = nn.Linear(config.hidden, 1)
        self.signs = nn.Linear(config.hidden, config.num_signs)
        self.denomination = nn.Linear(config.hidden, config.num_denominations)
        self.kind = nn.Linear(config.hidden, config.num_kinds) if config.num_kinds else None

    def heads(self, x: torch.Tensor) -> Outputs:
        x = self.stages(self.stem(x))  # [B, C, H/32, W/32]
        g = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)  # [B, 2C]
        loc = self.local(x).flatten(1)  # [B, local * gh * gw]
        h = self.trunk(torch.cat([g, loc], dim=1))  # [B, hidden]
        return Outputs(self.counterfeit(h).squeeze(1), self.signs(h), self.denomination(h),
                       self.kind(h) if self.kind is not None else None, h)

    def forward(self, x: torch.Tensor) -> Outputs:
        if self.training or not self.config.symmetric:
            return self.heads(x)
        b = x.shape[0]
        both = self.heads(torch.cat([x, x.flip(2, 3)]))  # the view and the view turned 180°: [2B, ...]
        return Outputs(*[None if t is None else (t[:b] + t[b:]) / 2 for t in both])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
