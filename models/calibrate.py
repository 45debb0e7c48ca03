"""Making the model's confidence mean something: temperature scaling and an out-of-distribution score.

    fit_temperature(logits, y)        one scalar T minimising the negative log-likelihood of sigmoid(z / T)
                                      (or softmax(z / T)) on held-out scans: the network's ranking is kept,
                                      its over-confidence on captures unlike training is divided out
    OodModel.fit(features, classes)   class means and one shared, shrunk covariance of the trunk's features
                                      of training notes; `score(f)` is the squared Mahalanobis distance to
                                      the nearest class mean divided by the feature dimension (about 1 for a
                                      training-like note, large for a scan unlike anything trained on)

Both are fitted on held-out data (`models.make_default`), stored in the checkpoint (temperatures in
`thresholds`, the OOD statistics as tensors in `ood`) and applied by `models.inference.from_outputs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def fit_temperature(logits: np.ndarray, y: np.ndarray, multiclass: bool = False) -> float:
    """Temperature in [0.5, 20] (log-spaced search, then refined) minimising the NLL of the labels `y`
    (0/1 for a binary logit [N]; class indices for logits [N, K])."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(y))

    def nll(temp: float) -> float:
        if multiclass:
            return float(torch.nn.functional.cross_entropy(z / temp, t.long()))
        return float(torch.nn.functional.binary_cross_entropy_with_logits(z / temp, t.double()))

    if len(z) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.5), np.log(20.0), 61))
    best = float(grid[int(np.argmin([nll(g) for g in grid]))])
    fine = best * np.exp(np.linspace(-0.06, 0.06, 25))
    return round(float(fine[int(np.argmin([nll(g) for g in fine]))]), 4)


@dataclass
class OodModel:
    means: torch.Tensor  # [C, F] class means
    precision: torch.Tensor  # [F, F] inverse of the shared, shrunk covariance

    @classmethod
    def fit(cls, features: np.ndarray, classes: np.ndarray, shrinkage: float = 0.1) -> OodModel:
        f = np.asarray(features, dtype=np.float64)
        c = np.asarray(classes)
        labels = sorted(set(c.tolist()))
        means = np.stack([f[c == k].mean(0) for k in labels])
        centred = f - means[np.searchsorted(labels, c)]
        cov = centred.T @ centred / max(len(f) - len(labels), 1)
        cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        return cls(torch.tensor(means, dtype=torch.float32), torch.tensor(np.linalg.inv(cov), dtype=torch.float32))

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """[B, F] -> [B]: min over classes of the squared Mahalanobis distance, per feature dimension."""
        means = self.means.to(features.device)
        prec = self.precision.to(features.device)
        d = features[:, None, :] - means[None, :, :]  # [B, C, F]
        m = torch.einsum("bcf,fg,bcg->bc", d, prec, d)
        return m.min(dim=1).values / features.shape[1]

    def to_dict(self) -> dict:
        return {"means": self.means.clone(), "precision": self.precision.clone()}

    @classmethod
    def from_dict(cls, d: dict) -> OodModel:
        return cls(torch.as_tensor(d["means"], dtype=torch.float32), torch.as_tensor(d["precision"], dtype=torch.float32))


def _quantile(values: np.ndarray, q: float, default: float) -> float:
    return float(np.quantile(values, q)) if len(values) else default


def choose_gates(p: dict[str, np.ndarray], val, ood: OodModel | None, max_false_reject: float = 0.005) -> dict:
    """The gates of `models.decision.decide_scan` before the three-way cut, from validation outputs
    (`models.train.predict_set`) of a set with negatives (`val.kind`) and the locator's geometry:

        min_visible    a visible share under which a note is rejected as incomplete: at most 0.55, and low
                       enough that at most `max_false_reject` / 2 of the validation notes fall under it
        kind gates     note_reject: at most max_false_reject / 2 of the notes are rejected by the kind head;
                       note_accept: at most 1 % of the negatives are judged as notes, but at most 2 % of
                       the notes are sent to review by it
        ood_review     the 99th percentile of the validation notes' out-of-distribution scores

    Returns them plus the kind temperature, and "_passed": the validation scans every gate lets through."""
    kind = val.kind.numpy()
    note = kind == 0
    geo = val.geometry.numpy()
    out: dict = {}
    out["min_visible"] = round(min(0.55, _quantile(geo[note, 2], max_false_reject / 2, 0.55)), 4)
    passed = (geo[:, 1] < 2) & (geo[:, 2] >= out["min_visible"]) & (geo[:, 0] > 0.5)
    if "kind_logits" in p:
        tk = fit_temperature(p["kind_logits"], kind, multiclass=True)
        z = p["kind_logits"] / tk
        pk = np.exp(z - z.max(1, keepdims=True))
        pk /= pk.sum(1, keepdims=True)
        p_note = pk[:, 0]
        reject = min(0.5, _quantile(p_note[note], max_false_reject / 2, 0.0))
        accept = max(reject, min(_quantile(p_note[~note], 0.99, reject), _quantile(p_note[note], 0.02, reject)))
        out.update(kind_temperature=tk, note_reject=round(reject, 6), note_accept=round(accept, 6))
        passed &= p_note >= accept
    if ood is not None and "features" in p:
        scores = ood.score(torch.as_tensor(p["features"])).numpy()
        out["ood_review"] = round(_quantile(scores[note], 0.99, float("inf")), 4)
        passed &= scores <= out["ood_review"]
    out["_passed"] = passed
    return out
