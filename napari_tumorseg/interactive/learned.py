"""The learned click engine: a click-guided checkpoint (``tumorseg train --interactive``)
answering prompts.

* 2D models run on the slices that hold prompts, each slice brought to the model's input
  size exactly as in training, and reach the rest of the object by propagation (see
  :mod:`napari_tumorseg.interactive.propagate`). A 2D image is a volume of one slice.
* 3D models (GLIMS) run once on a crop of the model's patch size centred on the prompts;
  outside the crop the result keeps the prior (or is empty).
* The previous-mask channel gets this engine's own last answer when the new prompts extend
  the previous ones on the same image (so a new click corrects it, as in training), else the
  ``prior`` mask, else nothing.
* Every click gets its way under its own disk (a positive click's disk is always in the
  mask, a negative one's never), whatever the network says.
* A click near the answer's edge also moves the object's probability threshold (2D models):
  a negative click inside the answer within 8 mm of its edge says the boundary is drawn too
  generously, so the threshold rises to just above the probability under the click; a
  positive click outside it within 8 mm of its edge lowers it to just below. The object is
  then propagated afresh at the new threshold. The threshold stays within [0.25, 0.85] and
  never crosses the probability under an earlier click (each click keeps the side its user
  put it on). A click far from the edge (a false blob, a missed part) is a local fix only
  here; a positive one the network does not follow is grown by the classic engine
  (``engines.ClickGrower``).
  Why: propagation fits each slice to the image, not to the clicked slice's edge, so
  without this a boundary that sits a few voxels out all round (another centre's oedema
  line) changes only on the clicked slice, click after click.
* Boxes and scribbles, which the network was not trained on, become clicks: a box its
  centre (and the result is kept inside the box's slice rectangle on that slice), scribbles
  a few points spread along each stroke.
* ``preprocessing["normalize_scope"] == "slice"`` (a model trained on single 2D images,
  such as the shipped starter) normalises each slice of a volume on its own, as in training;
  otherwise the whole volume is normalised at once, as training on volumes does.
* No prompt at all: the network segments automatically (what it learned on its no-click
  samples) on every slice, or on the whole volume for a 3D model.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_tumorseg.content_key import content_key
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.intensity import normalize_input
from napari_tumorseg.interactive.encoding import ClickGuided
from napari_tumorseg.interactive.prompts import Prompts
from napari_tumorseg.interactive.propagate import propagate
from napari_tumorseg.precision import prefer_channels_last, resolve
from napari_tumorseg.training.preprocessing import Preprocessing

_SCRIBBLE_POINTS = 5  # clicks drawn from each scribble stroke
_THRESHOLD_RANGE = (0.25, 0.85)  # how far clicks may move the object's threshold
_THRESHOLD_MARGIN = 0.05  # a click's probability is passed by this much
_THRESHOLD_STEP = 0.2  # the most one click moves it: a click is one piece of evidence
_SLICE_CHANGE = (0.5, 2.0)  # a re-cut slice keeping less / gaining more than this keeps its mask
_EDGE_MM = 8.0  # a click this close to the answer's edge says where the edge belongs
# How far a propagated cross-section may outgrow the clicked one (see propagate): a thin
# enhancing rim is clicked where it is thickest, which says nothing of its widest slice.
_SEED_RATIO = {"enhancing": 4.0}


class _Cancelled(Exception):
    pass


def _fit_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(c, z, y, x) -> (channels, ...): RGB exports of grey scans are averaged (as training
    did), a multi-scan case gives its first scan to a one-channel model (FLAIR first by the
    loaders' convention)."""
    c = image.shape[0]
    if c == channels:
        return image
    if channels == 1:
        return (image[:3].astype(np.float32).mean(0, keepdims=True) if c in (3, 4)
                else image[:1])
    raise TumorSegError(f"the click model needs {channels} image channels but the image has {c}")


class LearnedEngine:
    """A click-guided network as a :class:`~napari_tumorseg.interactive.prompts.ClickEngine`."""

    def __init__(self, model: ClickGuided, ckpt: dict, threshold: float = 0.5):
        if not isinstance(model, ClickGuided):
            raise TumorSegError("this checkpoint is not click-guided (train it with --interactive)")
        self.model = model.eval()
        self.ckpt_info = {k: ckpt.get(k) for k in ("model_name", "in_channels", "out_channels")}
        # The checkpoint's preprocessing with the one set of defaults (training's).
        self.prep = Preprocessing.from_dict(ckpt.get("preprocessing") or {})
        # Not (yet) a Preprocessing field: set on the shipped starter by scripts/shrink_checkpoint.py.
        self.normalize_scope = dict(ckpt.get("preprocessing") or {}).get("normalize_scope", "volume")
        self.encoding = model.encoding
        self.dims = self.prep.dims
        prefer_channels_last(self.model, "cpu", self.dims)  # the engine runs on the CPU
        self.name = f"learned: {ckpt.get('model_name')}"
        self.threshold = float(threshold)
        self.adapt_threshold = True  # clicks move the object's threshold (2D models; see above)
        self.precision = resolve("auto", "cpu")  # bf16 autocast on a CPU with native bf16
        self.path: str | None = None
        self.target: str | None = None  # what the user segments (see set_target)
        self._norm_key = None
        self._bf16_model = None  # the network in bf16 weights, made at the first bf16 call
        self._norm = None
        self._grid_key = None
        self._gvol: torch.Tensor | None = None
        self._last: tuple | None = None  # (image key, prompts, mask): the previous answer
        self._last_mask: np.ndarray | None = None
        # The previous answer's grid probabilities as the network gave them (2D models; read
        # under a new click and re-cut at a moved threshold) and the threshold it was cut at.
        self._pvol: dict | None = None
        self._pending: dict | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, threshold: float = 0.5) -> "LearnedEngine":
        from napari_tumorseg.models.checkpoint import load_checkpoint

        model, ckpt = load_checkpoint(path)
        if not isinstance(model, ClickGuided):
            raise TumorSegError(f"{Path(path).name} is not a click-guided checkpoint "
                                "(train one with tumorseg train --interactive)")
        model.float()  # the shipped starter is stored in fp16
        engine = cls(model, ckpt, threshold)
        engine.path = str(path)
        return engine

    # -- target and channels -------------------------------------------------------------
    def set_target(self, target: str | None) -> None:
        """What the clicks segment ("whole", "core", "enhancing", "lesion"): a network trained
        on BraTS regions is told it and answers with that region; a one-object network
        segments the clicked object whatever the target."""
        self.encoding.target_of(target)  # a region the network never learned: one-line refusal
        self.target = target

    def channels_for(self, target: str, channel_names) -> list[int] | None:
        """The case's channels this network reads, in its training order, matched by MR
        sequence (None: as stored, when either side's names do not say sequences; an entry
        None: a sequence the case lacks, given as zeros to a network trained for that)."""
        from napari_tumorseg.channels import channel_indices

        wanted = list(self.prep.channel_names or ())
        if not wanted or not channel_names:
            return None
        return channel_indices(list(channel_names), wanted, "the case", self.prep.missing_channels)

    def _region(self) -> int | None:
        """The output channel of the target on a regions network (None: a one-object network)."""
        from napari_tumorseg.interactive.encoding import TARGET_CHANNEL

        if self.prep.target != "regions":
            return None
        told = self.encoding.target_of(self.target) or "whole"
        return TARGET_CHANNEL[told]

    # -- input ---------------------------------------------------------------------------
    # The image's identity by content (content_key), not by ``id``: the dock stacks the case's
    # sequences into a new array on every click, and an id-keyed cache made every click a
    # fresh answer there (no incremental update, no threshold move, the volume normalised
    # again: 2 s a click in the window where the robot took 0.4).
    _key = staticmethod(content_key)

    def _normalized(self, image: np.ndarray) -> np.ndarray:
        key = self._key(image)
        if key != self._norm_key:
            raw_dtype = np.asarray(image).dtype
            img = _fit_channels(np.asarray(image), int(self.model.image_channels))
            if self.normalize_scope == "slice":
                # A model trained on single images (JPG/PNG slices) saw each one normalised
                # on its own: a volume's slices must be too, or their contrast differs.
                self._norm = np.concatenate([normalize_input(img[:, z:z + 1], self.prep, raw_dtype)
                                             for z in range(img.shape[1])], axis=1)
            else:
                self._norm = normalize_input(img, self.prep, raw_dtype)
            self._norm_key = key
        return self._norm

    def prepare(self, image: np.ndarray) -> None:
        """Normalise ``image`` (c, z, y, x) and bring it to the network's grid now, so the
        first click finds both cached (see engines.prepare_for_prompts)."""
        image = np.asarray(image)
        norm = self._normalized(image[None] if image.ndim == 3 else image)
        if self.dims != 3:
            self._grid_volume(norm)

    def _extends_last(self, key, prompts: Prompts) -> bool:
        return self._last is not None and self._last[0] == key and _extends(prompts, self._last[1])

    def _prev_for(self, key, prompts: Prompts, prior) -> np.ndarray | None:
        if self.encoding.with_prev_mask and self._extends_last(key, prompts):
            return self._last[2]
        return None if prior is None else np.asarray(prior, bool)

    # -- the protocol --------------------------------------------------------------------
    def segment(self, image: np.ndarray, spacing, prompts: Prompts, prior: np.ndarray | None = None,
                cancel=None) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4:
            raise TumorSegError(f"the image must be (c, z, y, x); got shape {image.shape}")
        spacing = tuple(float(s) for s in spacing)[-3:]
        if len(spacing) == 2:
            spacing = (1.0, *spacing)
        shape = image.shape[1:]
        if prior is not None and tuple(np.shape(prior)) != tuple(shape):
            raise TumorSegError(f"the prior mask {np.shape(prior)} is not on the image grid {shape}")
        # Another target, or another prior (a prediction the user has since painted on),
        # never extends the last answer.
        key = (self._key(image), self.target, _digest(prior))
        norm = self._normalized(image)
        prev = self._prev_for(key, prompts, prior)
        extends = self._extends_last(key, prompts)
        self._last_mask = self._last[2] if extends else None
        pos, neg, box = _as_clicks(prompts, shape)
        self._pending = None
        try:
            with torch.inference_mode(), self.precision.autocast():  # logits cast to float32 below
                if self.dims == 3:
                    mask = self._segment_3d(norm, spacing, pos, neg, prev, prior, cancel)
                else:
                    thr = (self._click_threshold(prompts, shape, spacing) if extends and self.adapt_threshold
                           else self.threshold)
                    mask = self._segment_2d(norm, spacing, pos, neg, box, prev, prior, cancel, thr)
        except _Cancelled:
            return prior.astype(bool) if prior is not None else np.zeros(shape, bool)
        self._last = (key, prompts, mask)
        self._pvol = self._pending
        return mask

    @property
    def answer_threshold(self) -> float | None:
        """The threshold the last answer was cut at (clicks near the edge move it; 2D models)."""
        return None if self._pvol is None else float(self._pvol["threshold"])

    def _click_threshold(self, prompts: Prompts, shape, spacing) -> float:
        """The object's threshold after the clicks ``prompts`` adds to the previous answer's
        (see the module docstring)."""
        from scipy import ndimage

        pv = self._pvol
        if pv is None or tuple(pv["shape"]) != tuple(shape):
            return self.threshold
        raw, t_old = pv["raw"], float(pv["threshold"])
        h, w = shape[1:]
        answer = self._last[2]

        def near_edge(point, inside: bool) -> bool:
            """Within 8 mm of the answer's edge on its slice, and within a third of the
            answer's thickness there: in a thin structure (an enhancing rim) every voxel is
            near an edge, and a click there says nothing about the boundary as a whole."""
            z, y, x = (int(np.clip(round(float(v)), 0, n - 1)) for v, n in zip(point, shape))
            m = answer[z]
            if bool(m[y, x]) != inside or not m.any() or m.all():
                return False
            depth = ndimage.distance_transform_edt(m, sampling=spacing[1:])
            d = depth[y, x] if inside else ndimage.distance_transform_edt(~m, sampling=spacing[1:])[y, x]
            return float(d) <= min(_EDGE_MM, float(depth.max()) / 3.0)

        def p_at(point) -> float:
            return _p_at(raw, point, (h, w))

        old = self._last[1]
        lo, hi = _THRESHOLD_RANGE
        t = t_old
        for point in np.asarray(prompts.negative, float)[len(old.negative):]:
            p = p_at(point)
            if p >= t_old and near_edge(point, inside=True):
                t = max(t, min(hi, p + _THRESHOLD_MARGIN, t_old + _THRESHOLD_STEP))
        for point in np.asarray(prompts.positive, float)[len(old.positive):]:
            p = p_at(point)
            if p < t_old and near_edge(point, inside=False):
                t = min(t, max(lo, p - _THRESHOLD_MARGIN, t_old - _THRESHOLD_STEP))
        # Earlier clicks keep their side: no positive click the network had above the old
        # threshold falls below the new one, no negative one it had below rises above.
        above = [p for p in map(p_at, prompts.positive) if p >= t_old]
        below = [p for p in map(p_at, prompts.negative) if p < t_old]
        if t > t_old and above:
            t = max(t_old, min(t, min(above) - 1e-3))
        if t < t_old and below:
            t = min(t_old, max(t, max(below) + 1e-3))
        return float(t)

    def probability_at(self, point) -> float | None:
        """The network's probability of the target at ``point`` (z, y, x, image voxels) in the
        last answer, with the threshold that answer was cut at: (p, threshold); None for a
        3D model or before any answer. A positive click the network puts below the threshold
        is one it does not follow (see engines.ClickGrower)."""
        pv = self._pvol
        if pv is None:
            return None
        return _p_at(pv["raw"], point, tuple(pv["shape"])[1:]), float(pv["threshold"])

    def probability_over(self, mask: np.ndarray) -> np.ndarray | None:
        """The network's probability of the target on every voxel of the image grid where
        ``mask`` is set (nearest grid cell; 0 on slices the last answer did not run), or
        None for a 3D model or before any answer."""
        pv = self._pvol
        if pv is None or tuple(pv["shape"]) != tuple(mask.shape):
            return None
        raw = pv["raw"].numpy()
        nz, gh, gw = raw.shape
        h, w = mask.shape[1:]
        gy = np.clip(np.round((np.arange(h) + 0.5) * gh / h - 0.5).astype(int), 0, gh - 1)
        gx = np.clip(np.round((np.arange(w) + 0.5) * gw / w - 0.5).astype(int), 0, gw - 1)
        z, y, x = np.nonzero(mask)
        return raw[z, gy[y], gx[x]]

    def remember(self, image, spacing, prompts: Prompts, mask) -> None:
        """``mask`` is what the screen shows for ``prompts`` (after the never-worse rule): the
        next click's previous-mask channel gets it, not this engine's raw answer."""
        if self._last is not None and self._last[1] is prompts:
            self._last = (self._last[0], prompts, np.asarray(mask, bool).copy())

    # -- 2D ------------------------------------------------------------------------------
    def _grid(self, shape_yx) -> tuple[int, int]:
        size = self.prep.get("size")
        if size and self.prep.get("spatial", "resize") == "resize":
            return int(size[0]), int(size[1])
        return int(shape_yx[0]), int(shape_yx[1])

    def _grid_volume(self, norm: np.ndarray) -> torch.Tensor:
        """(z, c, gh, gw): every slice brought to the model's input size once per image, so
        a propagation step only indexes it."""
        if self._grid_key != self._norm_key:
            h, w = norm.shape[-2:]
            gh, gw = self._grid((h, w))
            t = torch.from_numpy(np.ascontiguousarray(norm)).float().permute(1, 0, 2, 3)
            if (gh, gw) != (h, w):
                t = F.interpolate(t, size=(gh, gw), mode="bilinear", align_corners=False,
                                  antialias=gh < h or gw < w)
            self._gvol, self._grid_key = t.contiguous(), self._norm_key
        return self._gvol

    def _net(self, x: torch.Tensor):
        """The network's forward. In bf16 (a CPU with native bf16) a 2D network runs on a bf16
        copy of its weights with autocast off: autocast recast every weight at each of a
        click's ~44 calls and handed the norms fp32 activations (a volume click 0.61 s, against
        0.56 s so, and 0.81 s in fp32; masks Dice 0.9996 to fp32). The caller casts the
        output to float32."""
        if self.precision.dtype is not torch.bfloat16 or self.dims != 2:
            return self.model(x)
        if self._bf16_model is None:
            self._bf16_model = copy.deepcopy(self.model).to(torch.bfloat16).eval()
        with torch.autocast("cpu", enabled=False):
            return self._bf16_model(x.to(torch.bfloat16))

    def _probs(self, gvol: torch.Tensor, gspacing, requests) -> torch.Tensor:
        """(n, gh, gw) foreground probabilities for (z, pos, neg, prev) requests on the grid."""
        gh, gw = gvol.shape[-2:]
        x = gvol[[int(r[0]) for r in requests]]
        maps = np.stack([self.encoding.maps((gh, gw), gspacing, p, n, prev, target=self.target)
                         for _, p, n, prev in requests])
        out = self._net(torch.cat([x, torch.from_numpy(maps)], dim=1))
        out = out[0] if isinstance(out, (list, tuple)) else out
        if tuple(out.shape[-2:]) != (gh, gw):  # SegFormer predicts at 1/4 of its input
            out = F.interpolate(out.float(), size=(gh, gw), mode="bilinear", align_corners=False)
        return self._to_prob(out.float())

    def _honour(self, mask: np.ndarray, spacing, pos, neg) -> np.ndarray:
        """Every click gets its way under its own disk: a network that has not learned a
        case well could otherwise ignore a click, and the user would click the same spot
        again and again for nothing."""
        if len(pos):
            mask = mask | (self.encoding.click_map(mask.shape, spacing, pos) > 0)
        if len(neg):
            mask = mask & ~(self.encoding.click_map(mask.shape, spacing, neg) > 0)
        return mask

    def _to_prob(self, logits: torch.Tensor) -> torch.Tensor:
        """(n, *sp) foreground probability: sigmoid of channel 0 (binary, or WT of the
        regions), or the softmax mass of the foreground classes."""
        region = self._region()
        if region is not None:
            return torch.sigmoid(logits[:, region])
        if logits.shape[1] == 1 or (logits.ndim == 5 and logits.shape[1] == 3):
            return torch.sigmoid(logits[:, 0])
        return 1.0 - torch.softmax(logits, dim=1)[:, 0]

    def _segment_2d(self, norm, spacing, pos, neg, box, prev, prior, cancel, thr=None) -> np.ndarray:
        """Seeds on the prompted slices, propagation on the model grid, and one upsampling
        of every changed slice's probabilities to the image grid at the end."""
        nz, h, w = norm.shape[1:]
        gvol = self._grid_volume(norm)
        gh, gw = gvol.shape[-2:]
        sy, sx = h / gh, w / gw
        gspacing = (spacing[1] * sy, spacing[2] * sx)
        thr = self.threshold if thr is None else float(thr)
        result = prior.astype(bool).copy() if prior is not None else np.zeros((nz, h, w), bool)
        empty = np.zeros((0, 2))
        probs: dict[int, torch.Tensor] = {}
        if len(pos) == 0 and len(neg) == 0:  # automatic: every slice, no prompt
            for z0 in range(0, nz, 8):
                _check(cancel)
                reqs = [(z, empty, empty, None) for z in range(z0, min(nz, z0 + 8))]
                probs.update(zip(range(z0, z0 + len(reqs)), self._probs(gvol, gspacing, reqs)))
            self._keep_probs(None, probs, thr, (nz, h, w))
            return self._paste(result, probs, (h, w), thr)
        last = self._last_mask  # this engine's previous answer when the prompts extend it
        if last is not None:
            result = last.copy()
            if self._pvol is not None and thr != self._pvol["threshold"]:
                # The object's threshold moved: every slice of the previous answer is re-read
                # at it from the network's own probabilities (the parts touching the previous
                # answer), and propagation from the clicked slices starts from that.
                recut = _rethreshold(self._pvol["raw"], thr, _on_grid(last, (gh, gw)))
                result = self._paste(result, recut, (h, w), thr)
                last = result

        def to_grid(points):  # voxel centres: (i + 0.5) * scale - 0.5 under resizing
            return (np.asarray(points, float).reshape(-1, 2) + 0.5) / (sy, sx) - 0.5

        def grid_mask(mask):
            return _on_grid(mask, (gh, gw))

        slices = sorted({int(p[0]) for p in pos} | {int(p[0]) for p in neg})
        clicks, reqs = {}, []
        for z in slices:
            zp = pos[pos[:, 0].astype(int) == z][:, 1:] if len(pos) else empty
            zn = neg[neg[:, 0].astype(int) == z][:, 1:] if len(neg) else empty
            clicks[z] = (zp, zn)
            pm = None if prev is None or not self.encoding.with_prev_mask else grid_mask(prev[z:z + 1])[0]
            reqs.append((z, to_grid(zp), to_grid(zn), pm))
        _check(cancel)
        seeds = {}
        for (z, gp, gn, _), pr in zip(reqs, self._probs(gvol, gspacing, reqs)):
            probs[z] = pr
            seeds[z] = self._honour(pr.numpy() > thr, gspacing, gp, gn)
        if nz > 1:
            def step(requests):
                _check(cancel)
                out = self._probs(gvol, gspacing, requests)
                for (z, *_), pr in zip(requests, out):
                    probs[z] = pr
                return [pr.numpy() > thr for pr in out]

            previous = None
            if last is not None:
                g = grid_mask(last)
                previous = {z: g[z] for z in range(nz)}
            reached = propagate(nz, seeds, step, previous=previous, cancel=cancel,
                                max_seed_ratio=_SEED_RATIO.get(self.target, 1.5))
            if reached is None:
                raise _Cancelled
        else:
            reached = seeds
        # Keep, on each slice, only the parts propagation kept (components off the object
        # are zeroed) before upsampling; slices it cleared become empty.
        kept = {z: probs[z] * torch.from_numpy(m) if z in probs else torch.zeros((gh, gw))
                for z, m in reached.items()}
        self._keep_probs(None if last is None else self._pvol, probs, thr, (nz, h, w))
        # Slices the object reaches are replaced; the others keep the prior (another lesion
        # segmented before, or the model's prediction the clicks are correcting) or, after a
        # new click, the previous answer.
        result = self._paste(result, kept, (h, w), thr)
        for z, (zp, zn) in clicks.items():
            result[z] = self._honour(result[z], spacing[1:], zp, zn)
            if box is not None and box[0] == z:
                _, y0, x0, y1, x1 = box
                keep = np.zeros((h, w), bool)
                keep[y0:y1 + 1, x0:x1 + 1] = True
                result[z] &= keep
        return result

    def _keep_probs(self, base, raw: dict, thr: float, shape) -> None:
        """The answer's grid probabilities, for the next click to read (see ``_pvol``): the
        previous answer's (``base``) with this call's slices written over."""
        if not raw:
            return
        if base is None or tuple(base["shape"]) != tuple(shape):
            volume = torch.zeros((shape[0], *next(iter(raw.values())).shape), dtype=torch.float32)
        else:
            volume = base["raw"].clone()
        for z, p in raw.items():
            volume[z] = p.float()
        self._pending = {"raw": volume, "threshold": float(thr), "shape": tuple(shape)}

    def _paste(self, result: np.ndarray, probs: dict, size, thr: float | None = None) -> np.ndarray:
        """Upsample grid probabilities (one batch) and threshold them into ``result``."""
        if not probs:
            return result
        thr = self.threshold if thr is None else thr
        zs = sorted(probs)
        stack = torch.stack([probs[z] for z in zs])[:, None]
        if tuple(stack.shape[-2:]) != tuple(size):
            stack = F.interpolate(stack, size=tuple(size), mode="bilinear", align_corners=False)
        masks = (stack[:, 0] > thr).numpy()
        for z, m in zip(zs, masks):
            result[z] = m
        return result

    # -- 3D ------------------------------------------------------------------------------
    def _segment_3d(self, norm, spacing, pos, neg, prev, prior, cancel) -> np.ndarray:
        shape = np.array(norm.shape[1:])
        result = prior.astype(bool).copy() if prior is not None else np.zeros(tuple(shape), bool)
        patch = np.array(self.prep.get("patch_size") or [96, 96, 96])
        size = np.minimum(patch, shape)
        pts = pos if len(pos) else neg
        if len(pts) == 0:
            centre = shape // 2
            size = shape  # automatic: the whole volume
        else:
            centre = np.round(pts.mean(axis=0)).astype(int)
        start = np.clip(centre - size // 2, 0, shape - size)
        sl = tuple(slice(int(a), int(a + n)) for a, n in zip(start, size))
        _check(cancel)
        crop = torch.from_numpy(np.ascontiguousarray(norm[(slice(None),) + sl]))[None].float()
        pm = None if prev is None else prev[sl]
        maps = self.encoding.maps(tuple(int(s) for s in size), spacing, pos - start, neg - start, pm,
                                  target=self.target)
        x = torch.cat([crop, torch.from_numpy(maps)[None]], dim=1)
        out = self.model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        result[sl] = self._honour(self._to_prob(out.float())[0].numpy() > self.threshold, spacing,
                                  pos - start, neg - start)
        return result


def _digest(mask) -> bytes | None:
    """An exact fingerprint of a bool mask (a painted voxel changes it); None for no mask."""
    if mask is None:
        return None
    import hashlib

    m = np.asarray(mask, bool)
    return hashlib.blake2b(np.packbits(m).tobytes() + repr(m.shape).encode(), digest_size=16).digest()


def _p_at(raw: torch.Tensor, point, size_yx) -> float:
    """The grid probability ``raw`` (z, gh, gw) at image voxel ``point`` (z, y, x) of an image
    of in-plane size ``size_yx`` (voxel centres: (i + 0.5) * scale - 0.5 under resizing)."""
    nz, gh, gw = raw.shape
    h, w = size_yx
    z, y, x = (float(v) for v in point)
    gy = int(np.clip(round((y + 0.5) * gh / h - 0.5), 0, gh - 1))
    gx = int(np.clip(round((x + 0.5) * gw / w - 0.5), 0, gw - 1))
    return float(raw[int(np.clip(round(z), 0, nz - 1)), gy, gx])


def _rethreshold(raw: torch.Tensor, thr: float, shown: np.ndarray) -> dict[int, torch.Tensor]:
    """The probabilities ``raw`` (z, gh, gw) cut at ``thr`` on every slice of ``shown`` (the
    answer on screen, on the model grid: the never-worse rule may have kept parts the
    network's last answer dropped): slice -> the probabilities of the parts of ``raw > thr``
    that touch it.

    A slice the new cut would more than halve or double is left out (it keeps what is
    shown): there the network is unsure of the whole cross-section, not of its edge, and a
    threshold moved for the edge would wipe it."""
    from napari_tumorseg.interactive.propagate import connected_to

    out = {}
    for z in range(raw.shape[0]):
        old = shown[z]
        if not old.any():
            continue
        m = connected_to(raw[z].numpy() > thr, old)
        if _SLICE_CHANGE[0] * old.sum() <= m.sum() <= _SLICE_CHANGE[1] * old.sum():
            out[z] = raw[z] * torch.from_numpy(m)
    return out


def _on_grid(mask: np.ndarray, size) -> np.ndarray:
    """(z, y, x) bool mask brought to the model grid (z, *size), nearest neighbour."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
    return F.interpolate(t[:, None], size=tuple(size), mode="nearest-exact")[:, 0].numpy() > 0.5


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise _Cancelled


def _extends(new: Prompts, old: Prompts) -> bool:
    """True when ``new`` holds every click of ``old`` (in order) and nothing else changed."""
    if new.box != old.box or (new.scribbles is not None) != (old.scribbles is not None):
        return False
    if new.scribbles is not None and not np.array_equal(new.scribbles, old.scribbles):
        return False
    for a, b in ((new.positive, old.positive), (new.negative, old.negative)):
        if len(a) < len(b) or not np.array_equal(a[: len(b)], b):
            return False
    return len(new.positive) + len(new.negative) > len(old.positive) + len(old.negative)


def _as_clicks(prompts: Prompts, shape) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """(positive (n, 3), negative (n, 3), box as ints or None), clipped to the grid."""
    hi = np.array(shape) - 1
    pos = [np.asarray(prompts.positive, float)]
    neg = [np.asarray(prompts.negative, float)]
    box = None
    if prompts.box is not None:
        z, y0, x0, y1, x1 = prompts.box
        y0, y1 = sorted((y0, y1))
        x0, x1 = sorted((x0, x1))
        box = tuple(int(round(v)) for v in (z, y0, x0, y1, x1))
        pos.append(np.array([[z, (y0 + y1) / 2, (x0 + x1) / 2]]))
    if prompts.scribbles is not None:
        s = np.asarray(prompts.scribbles)
        if s.shape != tuple(shape):
            raise TumorSegError(f"scribbles {s.shape} are not on the image grid {tuple(shape)}")
        for value, out in ((1, pos), (2, neg)):
            vox = np.argwhere(s == value)
            if len(vox):
                take = np.linspace(0, len(vox) - 1, min(_SCRIBBLE_POINTS, len(vox))).round().astype(int)
                out.append(vox[take].astype(float))
    pos_a = np.clip(np.vstack(pos), 0, hi) if sum(len(p) for p in pos) else np.zeros((0, 3))
    neg_a = np.clip(np.vstack(neg), 0, hi) if sum(len(n) for n in neg) else np.zeros((0, 3))
    return np.round(pos_a), np.round(neg_a), box
