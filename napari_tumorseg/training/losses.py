"""Segmentation and classification losses of the five seed papers.

Targets, by model output kind (``ModelInfo.output``):

* ``binary``  – logits (N, 1, *sp); target float {0, 1} of the same shape.
* ``regions`` – logits (N, R, *sp), one sigmoid per region (BraTS WT/TC/ET); target
  float {0, 1} (N, R, *sp), see :func:`napari_tumorseg.brats.labels_to_regions`.
* ``multiclass`` – logits (N, K, *sp) (SegFormer: K = 2); target long (N, *sp).
* ``classes`` – logits (N, K); target long (N,).

Losses:

* ``bce``      BCEWithLogits (seed 000).
* ``dice``     soft Dice on probabilities, ``1 - (2 sum(p y) + s) / (sum(p) + sum(y) + s)``
  (seed 001 eq. 2; ``squared=True`` uses ``sum(p^2) + sum(y^2)``, seed 004 eq. 2), computed
  per sample and channel and averaged (``batch=True``: one Dice over the whole batch):
  MONAI's ``DiceLoss`` is this equation, so it computes it (the tests hold it to the hand
  values).
* ``combo``    alpha * BCE + (1 - alpha) * Dice, alpha 0.7 or 0.5 (seed 003).
* ``bce_dice`` BCE + lambda * Dice (seed 001).
* ``dice_ce``  Dice + CE, equal weights (seed 004); CE is BCE for sigmoid outputs (the
  nested WT/TC/ET regions are not exclusive classes, so no softmax across them). With a
  list of outputs (deep supervision, full resolution first) the per-scale losses are
  weighted 1, 1/2, 1/4, 1/8 (seed 004 eq. 3, not renormalised) against the target
  downsampled to each scale by nearest neighbour.
* ``ce``       cross-entropy (SegFormer's 2 logits, the ConvNeXt V2 classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.output_kinds import output_kind

LOSS_NAMES = ("bce", "dice", "combo", "bce_dice", "dice_ce", "ce")
DEFAULT_DS_WEIGHTS = (1.0, 0.5, 0.25, 0.125)
# Keys a model preset may keep in loss_params for documentation only (not loss arguments).
_DOC_KEYS = {"variants", "paper", "note"}


def _sigmoid_mode(mode: str) -> bool:
    return output_kind(mode).sigmoid


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str = "binary",
    smooth: float = 1e-5,
    squared: bool = False,
    batch: bool = False,
    include_background: bool = True,
    smooth_nr: float | None = None,
    smooth_dr: float | None = None,
    fn_weight=None,
) -> torch.Tensor:
    """Soft Dice loss on logits (module doc's equation), computed by MONAI's ``DiceLoss``.

    ``fn_weight`` (beta in (0, 1)) makes it the Tversky loss, ``1 - (TP + s) / (TP + (1 -
    beta) FP + beta FN + s)`` (Salehi et al. 2017, MONAI's ``TverskyLoss``): above 0.5 a missed
    voxel costs more than a false one (Dice is beta = 0.5), for structures a network draws thin.
    One beta per output channel (a list; sigmoid outputs) weighs each region its own way.

    ``mode`` is the model output kind: sigmoid kinds take a (N, C, ...) float target,
    softmax kinds a (N, ...) class-index target (one-hot encoded by MONAI).
    ``include_background`` only applies to softmax outputs: a sigmoid map's one channel is
    the tumour itself. ``smooth_nr`` / ``smooth_dr`` (MONAI's names) set the numerator /
    denominator terms separately; both default to ``smooth``.
    """
    from monai.losses import DiceLoss

    sigmoid = _sigmoid_mode(mode)
    logits = logits.float()
    if sigmoid:
        target = target.float()
        if target.shape != logits.shape:
            raise TumorSegError(f"target {tuple(target.shape)} does not match output {tuple(logits.shape)}")
    else:
        if tuple(target.shape) != (logits.shape[0], *logits.shape[2:]):
            raise TumorSegError(f"target {tuple(target.shape)} does not match output {tuple(logits.shape)}")
        target = target.long()[:, None]
    common = dict(include_background=include_background or sigmoid, to_onehot_y=not sigmoid,
                  sigmoid=sigmoid, softmax=not sigmoid, batch=batch,
                  smooth_nr=smooth if smooth_nr is None else float(smooth_nr),
                  smooth_dr=smooth if smooth_dr is None else float(smooth_dr))
    if fn_weight is not None:
        return _tversky(fn_weight, squared, **common)(logits, target)
    return DiceLoss(squared_pred=squared, **common)(logits, target)


def _tversky(fn_weight, squared: bool, reduction: str = "mean", **kwargs) -> nn.Module:
    """MONAI's ``TverskyLoss`` with beta ``fn_weight`` (alpha = 1 - beta), or one per channel."""
    betas = [float(b) for b in (fn_weight if isinstance(fn_weight, (list, tuple)) else [fn_weight])]
    if not betas or not all(0.0 < b < 1.0 for b in betas):
        raise TumorSegError(f"fn_weight (Tversky beta) must lie in (0, 1), got {fn_weight}")
    if squared:
        raise TumorSegError("the Tversky form (fn_weight) has no squared variant")
    return _Tversky(betas, reduction, kwargs)


class _Tversky(nn.Module):
    def __init__(self, betas: list[float], reduction: str, kwargs: dict):
        from monai.losses import TverskyLoss

        super().__init__()
        self.reduction = reduction
        self.terms = [TverskyLoss(alpha=1.0 - b, beta=b, reduction="none", **kwargs) for b in betas]
        if len(betas) > 1 and not kwargs.get("sigmoid"):
            raise TumorSegError("one fn_weight per channel needs a sigmoid output (regions, binary)")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if len(self.terms) == 1:
            out = self.terms[0](logits, target)
        elif logits.shape[1] != len(self.terms):
            raise TumorSegError(f"{len(self.terms)} fn_weight values for {logits.shape[1]} output channels")
        else:
            out = torch.cat([term(logits[:, c:c + 1], target[:, c:c + 1]) for c, term in enumerate(self.terms)],
                            dim=0 if self.terms[0].batch else 1)  # (C,) over the batch, else (N, C)
        return out.mean() if self.reduction == "mean" else out


def _ce(logits: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    if _sigmoid_mode(mode):
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return F.cross_entropy(logits.float(), target.long())


class SegLoss(nn.Module):
    """``w_ce * CE + w_dice * Dice`` on one output; every named loss is one of these."""

    def __init__(self, name: str, mode: str, w_ce: float, w_dice: float, **dice_kwargs: Any):
        super().__init__()
        self.name, self.mode = name, mode
        self.w_ce, self.w_dice = float(w_ce), float(w_dice)
        self.dice_kwargs = dice_kwargs
        _sigmoid_mode(mode)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.is_floating_point() and _sigmoid_mode(self.mode):
            unknown = torch.isnan(target)
            if bool(unknown.any()):
                return self._partial(logits, target, unknown)
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.w_ce:
            loss = loss + self.w_ce * _ce(logits, target, self.mode)
        if self.w_dice:
            loss = loss + self.w_dice * soft_dice_loss(logits, target, self.mode, **self.dice_kwargs)
        return loss

    def _partial(self, logits: torch.Tensor, target: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
        """The loss over the (sample, channel) maps that carry a label: a NaN anywhere in a
        map marks it unknown (a one-object mask in a regions run: core and enhancing). With
        every map known it equals :meth:`forward`'s (the same means, fewer terms)."""
        from monai.losses import DiceLoss

        if target.shape != logits.shape:
            raise TumorSegError(f"target {tuple(target.shape)} does not match output {tuple(logits.shape)}")
        known = ~unknown.flatten(2).any(-1)  # (N, C)
        loss = logits.new_zeros((), dtype=torch.float32)
        if not bool(known.any()):
            return loss + 0.0 * logits.float().sum()  # nothing to learn here; keeps the graph
        logits, t = logits.float(), torch.nan_to_num(target.float(), nan=0.0)
        if self.w_ce:
            bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").flatten(2).mean(-1)
            loss = loss + self.w_ce * bce[known].mean()
        if self.w_dice:
            kw = dict(self.dice_kwargs)
            smooth = float(kw.pop("smooth", 1e-5))
            nr, dr = kw.pop("smooth_nr", None), kw.pop("smooth_dr", None)
            batch = bool(kw.pop("batch", False))
            squared, beta = bool(kw.pop("squared", False)), kw.pop("fn_weight", None)
            common = dict(sigmoid=True, smooth_nr=smooth if nr is None else float(nr),
                          smooth_dr=smooth if dr is None else float(dr))

            def term(channel=None, **more):
                if beta is not None:
                    one = beta[channel] if channel is not None and isinstance(beta, (list, tuple)) else beta
                    return _tversky(one, squared, **common, **more)
                return DiceLoss(squared_pred=squared, **common, **more)

            if batch:  # one Dice per channel over the samples that label it
                terms = [term(c, batch=True)(logits[known[:, c], c:c + 1], t[known[:, c], c:c + 1])
                         for c in range(logits.shape[1]) if bool(known[:, c].any())]
                loss = loss + self.w_dice * torch.stack(terms).mean()
            else:
                per_map = term(reduction="none")(logits, t).reshape(known.shape)
                loss = loss + self.w_dice * per_map[known].mean()
        return loss

    def extra_repr(self) -> str:
        return f"name={self.name}, mode={self.mode}, w_ce={self.w_ce}, w_dice={self.w_dice}"


def downsample_target(target: torch.Tensor, spatial: Sequence[int], mode: str) -> torch.Tensor:
    """Nearest-neighbour resize of a target to a deep-supervision scale."""
    spatial = tuple(int(s) for s in spatial)
    if _sigmoid_mode(mode):
        if tuple(target.shape[2:]) == spatial:
            return target
        return F.interpolate(target.float(), size=spatial, mode="nearest")
    if tuple(target.shape[1:]) == spatial:
        return target
    t = F.interpolate(target[:, None].float(), size=spatial, mode="nearest")
    return t[:, 0].long()


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of ``base`` over a list of outputs (full resolution first).

    A single tensor output is passed straight to ``base``, so the same loss serves the
    model in eval mode (one output) and train mode (the list).
    """

    def __init__(self, base: nn.Module, weights: Sequence[float] = DEFAULT_DS_WEIGHTS):
        super().__init__()
        self.base = base
        self.weights = [float(w) for w in weights]

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.base(outputs, target)
        if len(outputs) > len(self.weights):
            raise TumorSegError(
                f"{len(outputs)} deep-supervision outputs but only {len(self.weights)} weights"
            )
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, out in zip(self.weights, outputs):
            t = downsample_target(target, out.shape[2:], self.base.mode)
            total = total + w * self.base(out, t)
        return total


def build_loss(spec, mode: str = "binary", deep_supervision_weights=None, **params: Any) -> nn.Module:
    """A loss module from a loss name or a :class:`TrainingPreset` (its loss and params).

    ``mode`` is the model's output kind. ``params`` override the preset's ``loss_params``:
    ``alpha`` (combo), ``lam``/``lambda`` (bce_dice), ``smooth``, ``squared``, ``batch``,
    ``include_background``, ``fn_weight`` (Dice terms; ``fn_weight`` makes them Tversky's),
    ``pos_weight`` (bce).
    """
    if isinstance(spec, str):
        name, base_params = spec, {}
    else:  # a TrainingPreset (duck-typed to keep this module free of the model registry)
        name, base_params = spec.loss, dict(spec.loss_params or {})
        if deep_supervision_weights is None:
            deep_supervision_weights = spec.deep_supervision_weights
    p = {k: v for k, v in {**base_params, **params}.items() if k not in _DOC_KEYS}
    name = name.lower()
    # MONAI DiceCELoss spellings, as model presets quote the papers' code.
    if "squared_pred" in p:
        p["squared"] = p.pop("squared_pred")
    for flag, wants_sigmoid in (("sigmoid", True), ("softmax", False)):
        if flag in p and bool(p.pop(flag)) and _sigmoid_mode(mode) != wants_sigmoid:
            raise TumorSegError(f"loss asks for {flag} but the model's output kind is {mode!r}")
    dice_keys = {"smooth", "squared", "batch", "include_background", "smooth_nr", "smooth_dr", "fn_weight"}
    dice_kwargs = {k: p.pop(k) for k in list(p) if k in dice_keys}
    if name == "bce":
        if not _sigmoid_mode(mode):
            raise TumorSegError(f"bce needs a sigmoid output, not {mode!r}; use ce")
        pos_weight = p.pop("pos_weight", None)
        _no_more(name, p)
        if pos_weight is not None:
            loss: nn.Module = _WeightedBCE(float(pos_weight))
        else:
            loss = SegLoss(name, mode, 1.0, 0.0)
    elif name == "dice":
        _no_more(name, p)
        loss = SegLoss(name, mode, 0.0, 1.0, **dice_kwargs)
    elif name == "combo":
        alpha = float(p.pop("alpha", 0.7))
        _no_more(name, p)
        if not 0.0 <= alpha <= 1.0:
            raise TumorSegError(f"combo alpha must lie in [0, 1], got {alpha}")
        loss = SegLoss(name, mode, alpha, 1.0 - alpha, **dice_kwargs)
    elif name == "bce_dice":
        lam = float(p.pop("lam", p.pop("lambda", p.pop("lambda_dice", 1.0))))
        _no_more(name, p)
        loss = SegLoss(name, mode, 1.0, lam, **dice_kwargs)
    elif name == "dice_ce":
        w_ce = float(p.pop("lambda_ce", 1.0))
        w_dice = float(p.pop("lambda_dice", 1.0))
        _no_more(name, p)
        loss = SegLoss(name, mode, w_ce, w_dice, **dice_kwargs)
    elif name == "ce":
        _no_more(name, p)
        loss = SegLoss(name, mode, 1.0, 0.0)
    else:
        raise TumorSegError(f"unknown loss {name!r}; known losses: {', '.join(LOSS_NAMES)}")
    if deep_supervision_weights:
        loss = DeepSupervisionLoss(loss, deep_supervision_weights)
    return loss


def _no_more(name: str, params: dict) -> None:
    if params:
        raise TumorSegError(f"loss {name!r} does not take {', '.join(sorted(params))}")


class _WeightedBCE(nn.Module):
    mode = "binary"

    def __init__(self, pos_weight: float):
        super().__init__()
        self.register_buffer("pos_weight", torch.tensor([pos_weight]))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            logits.float(), target.float(), pos_weight=self.pos_weight
        )
