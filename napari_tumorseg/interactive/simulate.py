"""The simulated user of click-guided training (RITM / DeepEdit style).

Per sample: a first positive click deep inside the object (near the maximum of its
distance transform, with jitter so the network does not learn that clicks are always at
the exact centre), then a few rounds in which the network's own current prediction (no
gradient) is compared with the ground truth and the next click goes to the centre of the
largest error region: positive on a miss, negative on a false positive. A share of samples
gets no click at all, so the network also segments automatically, and another share
(with a previous-mask channel) gets no click but a previous mask that is the ground truth
shifted, grown or shrunk (a random blob on an empty sample): what slice-to-slice propagation
feeds the network, the neighbouring slice's mask, which it must fit to this slice's object
or drop where the object has ended. Everything a sample draws comes from its own seed, so a
resumed epoch replays the same clicks.

With ``style_fraction`` > 0 a share of the clicked samples (in batches with error rounds) is
trained on a **restyled truth**: the clicked region grown or shrunk by 1-4 pixels, as another
centre or another year's annotators draw it (BraTS 2023's oedema sits inside the line the
2013 raters drew). The network's own answer then misses the truth all round its boundary,
the error clicks land in that rim, and the loss asks for the whole boundary to move: the
network learns that a click in a rim means "my boundary is off here and around", not only
"under this disk". Without it a network that fits its training set never sees a click
that says more than its own answer, and clicks after the first change little.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from napari_tumorseg.interactive.encoding import TARGET_CHANNEL, ClickEncoding
from napari_tumorseg.interactive.robot import depth_map


def deep_point(mask: np.ndarray, spacing, rng: np.random.Generator | None = None,
               jitter: float = 0.0) -> np.ndarray | None:
    """A voxel deep inside ``mask``: the distance-transform maximum, or with ``jitter`` in
    (0, 1] any voxel at least ``(1 - jitter)`` times as deep, drawn with ``rng``."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    # The image border counts as the object's edge: a click never sits against the border.
    d = depth_map(mask, [float(x) for x in spacing][-mask.ndim:])
    dmax = float(d.max())
    if rng is None or jitter <= 0:
        return np.array(np.unravel_index(int(np.argmax(d)), d.shape))
    cand = np.argwhere(d >= (1.0 - jitter) * dmax)
    return cand[int(rng.integers(len(cand)))]


def error_click(pred: np.ndarray, gt: np.ndarray, spacing) -> tuple[np.ndarray, bool] | None:
    """(point, positive) at the centre of the largest error region, or None when none.

    The training-time user is the click robot's user (one definition of "the next click"),
    so the model learns from the clicks it will be measured with.
    """
    from napari_tumorseg.interactive.robot import next_click

    pred = np.asarray(pred, bool)
    hit = next_click(pred, gt, [float(s) for s in spacing][-pred.ndim:])
    if hit is None:
        return None
    return np.asarray(hit[0]), hit[1]


def foreground(out, y_shape: tuple[int, ...], channels=None) -> torch.Tensor:
    """(N, *spatial) bool foreground of a model output: binary / region logits (channel 0,
    the whole tumour, or each sample's region ``channels[i]``), or 2-class and multiclass
    logits (argmax > 0)."""
    out = out[0] if isinstance(out, (list, tuple)) else out
    if tuple(out.shape[2:]) != tuple(y_shape):
        out = F.interpolate(out.float(), size=tuple(y_shape),
                            mode="bilinear" if out.ndim == 4 else "trilinear", align_corners=False)
    if channels is not None:  # sigmoid regions, one region per sample
        idx = torch.as_tensor(list(channels), device=out.device)
        return out[torch.arange(out.shape[0], device=out.device), idx] > 0
    if out.shape[1] == 1:
        return out[:, 0] > 0
    if out.shape[1] == 3 and out.ndim == 5:  # GLIMS regions: WT is channel 0
        return out[:, 0] > 0
    return out.argmax(1) > 0


def target_foreground(y: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """(N, *spatial) bool object mask of a training target of any kind."""
    if y.ndim == len(spatial) + 1:  # class indices (N, *spatial)
        return y > 0
    return (y > 0.5).any(1)


def neighbour_like(mask: np.ndarray, rng: np.random.Generator, max_px: int = 3) -> np.ndarray:
    """``mask`` as the next slice might have it: shifted by up to ``max_px`` pixels along each
    axis, then grown or shrunk by up to ``max_px``; a random disk when ``mask`` is empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        centre = [int(rng.integers(0, s)) for s in mask.shape]
        r = float(rng.uniform(3, 10))
        grid = np.ogrid[tuple(slice(0, s) for s in mask.shape)]
        return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r
    shift = [int(rng.integers(-max_px, max_px + 1)) for _ in mask.shape]
    out = np.roll(mask, shift, axis=tuple(range(mask.ndim)))
    k = int(rng.integers(-max_px, max_px + 1))
    if k > 0:
        out = ndimage.binary_dilation(out, iterations=k)
    elif k < 0:
        eroded = ndimage.binary_erosion(out, iterations=-k)
        out = eroded if eroded.any() else out
    return out


def _restyle(mask: np.ndarray, rng: np.random.Generator, fraction: float,
             max_px: int = 4) -> np.ndarray | None:
    """``mask`` grown or shrunk by 1..``max_px`` pixels with probability ``fraction`` (None:
    not restyled; a shrink that would empty the mask is not made)."""
    if rng.random() >= fraction:
        return None
    k = int(rng.integers(1, max_px + 1))
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)  # square steps: round enough
    if rng.random() < 0.5:
        return ndimage.binary_dilation(mask, structure, iterations=k)
    out = ndimage.binary_erosion(mask, structure, iterations=k)
    return out if out.any() else None


def _restylable(y: torch.Tensor, channels) -> bool:
    """Region targets, one sigmoid channel or binary class indices: a target whose object
    is one map (a multi-class label map is not restyled)."""
    if channels is not None:
        return True
    if y.ndim >= 2 and y.is_floating_point() and y.shape[1] == 1:
        return True
    return not y.is_floating_point() and int(y.max()) <= 1


def _set_target(y: torch.Tensor, i: int, channel: int | None, mask: np.ndarray) -> None:
    """Write sample ``i``'s object (the region ``channel`` of region targets, else the one
    object) into ``y`` in place."""
    m = torch.from_numpy(np.ascontiguousarray(mask)).to(y.device)
    if not y.is_floating_point():  # binary class indices
        y[i] = m.to(y.dtype)
    else:
        y[i, 0 if channel is None else channel] = m.to(y.dtype)


class ClickSimulator:
    """Adds the prompt channels to a training batch."""

    def __init__(self, encoding: ClickEncoding, iterations: int = 3, no_click_fraction: float = 0.2,
                 jitter: float = 0.3, propagation_fraction: float = 0.25, style_fraction: float = 0.0):
        self.encoding = encoding
        self.style_fraction = float(style_fraction)
        self.iterations = int(iterations)
        self.no_click_fraction = float(no_click_fraction)
        self.jitter = float(jitter)
        self.propagation_fraction = float(propagation_fraction) if encoding.with_prev_mask else 0.0

    def batch_inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seeds, spacings,
                     train: bool) -> tuple[torch.Tensor, list[tuple[list, list]]]:
        """``x`` with prompt channels appended, and the clicks of each sample (see :meth:`prepare`)."""
        xin, _, clicks = self.prepare(model, x, y, seeds, spacings, train)
        return xin, clicks

    def prepare(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seeds, spacings,
                train: bool) -> tuple[torch.Tensor, torch.Tensor, list[tuple[list, list]]]:
        """``x`` with prompt channels appended, the targets to train on (``y``, with the
        restyled samples' region replaced; ``y`` itself is not changed), and the clicks of
        each sample.

        ``seeds`` (one per sample, None for validation: a fixed first click at the deepest
        point, no no-click share and no error rounds) and ``spacings`` (the grid spacing of
        each sample, mm) come from the dataset.
        """
        spatial = tuple(x.shape[2:])
        n = x.shape[0]
        targets = self.encoding.targets
        if targets and y.ndim == x.ndim and y.shape[1] == len(TARGET_CHANNEL):
            # Each sample clicks one region (drawn; validation cycles through them); the
            # loss still sees every region.
            # A sample clicks only a region its mask labels (a one-object mask: the whole
            # tumour; NaN marks the others, see datasets.lesion_only_regions).
            labelled = ~torch.isnan(y).flatten(2).any(-1).cpu().numpy()  # (N, regions)
            told = []
            for i in range(n):
                mine = [t for t in targets if labelled[i, TARGET_CHANNEL[t]]] or list(targets)
                told.append(mine[int(np.random.default_rng([seeds[i], 11]).integers(len(mine)))]
                            if train and seeds[i] is not None else mine[i % len(mine)])
            channels = [TARGET_CHANNEL[t] for t in told]
            gt = (y[torch.arange(n), torch.as_tensor(channels)] > 0.5).cpu().numpy()
        else:
            told, channels = [None] * n, None
            gt = target_foreground(y, spatial).cpu().numpy()
        clicks: list[tuple[list, list]] = [([], []) for _ in range(n)]
        active = []
        rng_batch = np.random.default_rng(seeds[0] if train and seeds and seeds[0] is not None else 0)
        drawn_rounds = int(rng_batch.integers(0, self.iterations + 1)) if train else 0
        restyle = bool(train and drawn_rounds and self.style_fraction > 0 and _restylable(y, channels))
        prev = np.zeros((n, *spatial), np.float32)
        y_out = y
        for i in range(n):
            rng = np.random.default_rng(seeds[i]) if train and seeds[i] is not None else None
            if rng is not None and rng.random() < self.propagation_fraction:
                prev[i] = neighbour_like(gt[i], rng)  # a propagation step: no click
                continue
            if not gt[i].any() or (rng is not None and rng.random() < self.no_click_fraction):
                # No first click (nothing to click, or an automatic sample). Half of these
                # in training still get the error rounds, starting from the automatic
                # answer: a slice without the target is where a user's negative click
                # removes a false positive, and the network must learn to obey it there.
                if rng is not None and rng.random() < 0.5:
                    active.append(i)
                continue
            p = deep_point(gt[i], spacings[i], rng, self.jitter if rng is not None else 0.0)
            clicks[i][0].append(p)
            active.append(i)
            if restyle and rng is not None:
                restyled = _restyle(gt[i], np.random.default_rng([seeds[i], 13]), self.style_fraction)
                if restyled is not None:
                    if y_out is y:
                        y_out = y.clone()
                    _set_target(y_out, i, None if channels is None else channels[i], restyled)
                    gt[i] = restyled
        rounds = drawn_rounds if active else 0
        for _ in range(rounds):
            xin = self._stack(x, spatial, spacings, clicks, prev, told)
            was_training = model.training
            model.eval()  # no batch-norm statistics from the click rounds
            with torch.no_grad():
                pred = foreground(model(xin), spatial, channels).cpu().numpy()
            model.train(was_training)
            for i in active:
                if self.encoding.with_prev_mask:
                    prev[i] = pred[i]
                hit = error_click(pred[i], gt[i], spacings[i])
                if hit is not None:
                    clicks[i][0 if hit[1] else 1].append(hit[0])
        return self._stack(x, spatial, spacings, clicks, prev, told), y_out, clicks

    def _stack(self, x, spatial, spacings, clicks, prev, told) -> torch.Tensor:
        maps = np.stack([self.encoding.maps(spatial, spacings[i], clicks[i][0], clicks[i][1], prev[i],
                                            target=told[i])
                         for i in range(x.shape[0])])
        return torch.cat([x, torch.from_numpy(maps).to(x.device, x.dtype)], dim=1)
