"""Intensity normalisation that does not depend on how a source stored its scans.

One Qt-free module and one entry point, :func:`normalize_input` (a checkpoint's
preprocessing -> the rule it records): training and validation
(:func:`napari_tumorseg.training.preprocessing.apply_preprocessing`), prediction
(:mod:`napari_tumorseg.inference.predict`) and the learned click engine
(:mod:`napari_tumorseg.interactive.learned`) all call it, so every path turns a scan into
model input the same way. The classic click engine works on raw intensities and needs none.

Methods (``Preprocessing.normalize``): ``"robust"`` (below; what a new training run
records for scanner data), ``"window8"`` (what it records for 8-bit exports, see
:func:`window8`), and the rules of older checkpoints, kept exactly: ``"zscore"`` (mean / std
of the whole volume, of the non-zero voxels when ``zscore_nonzero``), ``"scale255"`` (x /
255), ``"minmax"``, ``"none"``; ``"auto"`` (a checkpoint that names no method) is the old
rule: scale255 for uint8 data, else zscore.

**Why.** BraTS 2013 as DeepMedic ships it was z-scored over the whole volume: its background
is a constant -3.55 (or -3.80, ...), not 0. The old rule, "z-score over the non-zero voxels",
then counted that background as brain, and a model trained on it saw raw BraTS 2017-2023
scans (background 0) on another scale (whole-tumour Dice 0.84 on 2013 patients, 0.00-0.06 on
other years).

**The foreground** (:func:`foreground_mask`, per channel) is found from the volume's
in-plane border, the one place that is background in every source we read:

1. The background's level is ``m``, the median of the border ring of every slice (its
   outermost rows and columns). With ``lo``, ``hi`` the 2nd and 98th percentiles of the
   volume, BET's threshold (Smith 2002) ``lo + 0.1 (hi - lo)`` bounds a dark background
   from above (``hi - 0.1 (hi - lo)`` a bright one, a white JPG margin, from below). When
   more than half of the ring is exactly ``m`` (skull-stripped BraTS: 0; DeepMedic's
   z-scored 2013: -3.55; data z-scored over its non-zero voxels: 0 amid the brain's values)
   the background is *exactly* ``m`` — unless more than 10 % of the other voxels crowd
   the band between ``m`` and the threshold: then ``m`` is only the floor of a noisy
   background (zero-filled DICOM corners, a JPG's padded margin; BRAINIX: 43 %, JPG exports
   10-57 %, skull-stripped BraTS at most 5.5 %, its dark CSF) and the background is the
   band. A ring level inside the volume's range that is not constant is tissue (an image
   cropped inside the head): no background, all foreground.
2. The background is the part of those voxels connected to the ring, so a dark structure
   inside the head (necrosis, ventricles) is never background;
3. and what the head encloses in a slice is head (a dark lesion touching the ring through
   sulci in another slice still belongs to it). Steps 2 and 3 together are one in-plane
   labelling: the candidates connected, within their slice, to that slice's border.
   Components of the head under 1 % of the largest (noise specks, burned-in letters) are
   dropped.

This is exact on constant backgrounds, whatever their value, and it is unchanged by any
increasing affine map of the intensities (every threshold is a median, a share or a
percentile of the data), so a raw scan and a z-scored copy get the same mask (BraTS: Dice
0.998-0.9999 with the non-zero mask of raw 2012/2017/2021/2023 scans and with DeepMedic's
brainmask of its z-scored 2013 scans). A histogram
threshold (Otsu) cuts into the brain of a skull-stripped scan, whose dark CSF and necrosis
sit close to the background; "most frequent value" misses noisy backgrounds (BRAINIX,
JPG exports); "non-zero" fails on DeepMedic's -3.55. Measured on every shared set in
``tests/test_intensity.py``.

**The normalisation** (:func:`normalize_channel`, method ``"robust"``): inside the
foreground, clip to its 0.5-99.5 percentiles, subtract the foreground's mean and divide by
its standard deviation (of the clipped values); the background is set to
:data:`BACKGROUND` (0). Per channel, per volume (a 2D image is a volume of one slice).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: The value every background voxel has after robust normalisation.
BACKGROUND = 0.0
#: Default clipping percentiles of the foreground.
CLIP_PERCENTILES = (0.5, 99.5)

_BET_FRACTION = 0.10  # BET's threshold: 10 % of the 2-98 percentile range from either end
_NOISY_BAND = 0.10  # a constant ring plus this share of voxels in the band beside it: noise
_MIN_COMPONENT = 0.01  # components smaller than this share of the largest are dropped
_PERCENTILE_SAMPLE = 131072  # voxels enough to place the band (see background_candidates)


def _ring(vol: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of every slice of a (z, y, x) array, flattened."""
    if vol.shape[1] < 3 or vol.shape[2] < 3:
        return vol.reshape(-1)
    return np.concatenate([vol[:, 0, :], vol[:, -1, :], vol[:, 1:-1, 0], vol[:, 1:-1, -1]], axis=1).ravel()


def background_candidates(vol: np.ndarray) -> np.ndarray | None:
    """(z, y, x) bool: voxels whose intensity is the background's, or None when the border
    is tissue (no background). See the module doc, step 1."""
    finite = np.isfinite(vol)
    ring = _ring(vol)
    ring = ring[np.isfinite(ring)]
    if ring.size == 0:
        return None
    m = float(np.median(ring))
    vals = vol[finite]
    # The 2nd / 98th percentiles only place BET's 10 % band: every k-th voxel places it as
    # well (a regular grid, so the same volume always gets the same band) at a fraction of
    # a full partition's cost, which a 16-slice prediction pays per channel.
    step = max(1, vals.size // _PERCENTILE_SAMPLE)
    lo, hi = (float(v) for v in np.percentile(vals[::step], [2.0, 98.0]))
    dark, bright = lo + _BET_FRACTION * (hi - lo), hi - _BET_FRACTION * (hi - lo)
    constant = float(np.mean(ring == m)) > 0.5
    if m <= dark:
        band = vol <= dark
    elif m >= bright:
        band = vol >= bright
    else:
        # A level inside the tissue's range: a constant background (data z-scored over its
        # non-zero voxels keeps a background of 0 amid the brain's values), or tissue.
        return (vol == m) & finite if constant else None
    if constant:
        # Exactly m, unless the band beside it is crowded: then m is the floor of a noisy
        # background (zero-filled DICOM corners, a JPG's padded margin), not the background.
        exact = vol == m
        n_other = int(finite.sum() - exact.sum())
        if n_other and float((band & ~exact).sum()) <= _NOISY_BAND * n_other:
            return exact & finite
    return band & finite


_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndi.generate_binary_structure(2, 1)  # 4-neighbours within a slice, none across


def _outside_per_slice(cand: np.ndarray) -> np.ndarray:
    """(z, y, x) bool: the parts of ``cand`` connected, within their slice (4-neighbours),
    to the slice's border.

    Steps 2 and 3 of the module doc in one labelling: the candidates connected to the ring
    in 3D whose holes are then filled slice by slice are exactly the candidates connected
    to their own slice's border (the border is part of the ring, and a region cut off from
    it in its slice is a hole there). Three labellings were half of a 16-slice prediction's
    time outside the network.
    """
    lab, n = ndi.label(cand, structure=_IN_PLANE)
    outside = np.zeros(n + 1, bool)
    for edge in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        outside[edge] = True
    outside[0] = False  # label 0: not a candidate
    return outside[lab]


def foreground_mask(channel: np.ndarray) -> np.ndarray:
    """(z, y, x) bool foreground (head or brain) of one channel; see the module doc.

    A 2D image is given as (1, y, x). An image with no background found is all foreground;
    a constant image has none.
    """
    vol = np.asarray(channel)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3:
        raise ValueError(f"foreground_mask takes a (z, y, x) channel, got shape {vol.shape}")
    finite = np.isfinite(vol)
    if not finite.any():
        return np.zeros(vol.shape, bool)
    vals = vol[finite]
    if float(vals.min()) == float(vals.max()):
        return np.zeros(vol.shape, bool)
    cand = background_candidates(vol)
    if cand is None:
        return finite.copy()
    # Steps 2 and 3: the background, holes filled (a NaN / Inf voxel is no tissue: it links).
    fg = ~_outside_per_slice(cand | ~finite) & finite
    # Then the specks.
    lab, n = ndi.label(fg)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        keep = sizes >= _MIN_COMPONENT * sizes.max()
        fg = keep[lab]
    return fg


def normalize_channel(channel: np.ndarray, mask: np.ndarray | None = None,
                      clip=CLIP_PERCENTILES) -> np.ndarray:
    """One (z, y, x) channel, robust z-scored inside its foreground, background 0 (float32).

    ``mask`` is the foreground (computed with :func:`foreground_mask` when not given).
    Non-finite voxels are passed through unchanged.
    """
    vol = np.asarray(channel, dtype=np.float32)
    fg = foreground_mask(vol) if mask is None else np.asarray(mask, bool)
    out = np.full(vol.shape, BACKGROUND, np.float32)
    bad = ~np.isfinite(vol)
    if bad.any():
        # NaN / Inf stay what they are: the checks downstream (prediction refuses them,
        # training stops on a NaN loss) must see them, never a quiet background.
        out[bad] = vol[bad]
        fg = fg & ~bad
    if not fg.any():
        return out
    vals = vol[fg].astype(np.float64)
    lo, hi = np.percentile(vals, [float(clip[0]), float(clip[1])])
    vals = np.clip(vals, lo, hi)
    mean, std = float(vals.mean()), float(vals.std())
    out[fg] = ((vals - mean) / (std if std > 1e-8 * max(1.0, abs(mean)) else 1.0)).astype(np.float32)
    return out


def normalize_robust(czyx: np.ndarray, clip=CLIP_PERCENTILES) -> np.ndarray:
    """(c, z, y, x) -> float32, every channel by :func:`normalize_channel` on its own foreground."""
    img = np.asarray(czyx)
    return np.stack([normalize_channel(img[c], None, clip) for c in range(img.shape[0])])


def foreground_of(czyx: np.ndarray) -> np.ndarray:
    """(z, y, x) bool: voxels in the foreground of any channel."""
    img = np.asarray(czyx)
    out = np.zeros(img.shape[1:], bool)
    for c in range(img.shape[0]):
        out |= foreground_mask(img[c])
    return out


# ----------------------------------------------------------------------------- every rule

NORMALIZATIONS = ("auto", "robust", "window8", "zscore", "scale255", "minmax", "none")


def is_8bit(dtype) -> bool:
    """Data stored as 8-bit (JPG / PNG / 8-bit TIFF exports): already windowed for display."""
    return dtype is not None and np.dtype(dtype) == np.uint8


def new_run_method(raw_dtype) -> str:
    """The rule a new training run records: ``window8`` for 8-bit exports, else ``robust``.

    An 8-bit export was windowed once per volume by whoever exported it (LGG kaggle_3m, the
    Roboflow JPGs): the window is the one thing its images share, and re-standardising each
    volume by its own foreground statistics makes the lesion's contrast depend on its size
    (LGG: a FLAIR lesion 1.5 standard deviations above one patient's brain and 0.75 above
    the other's, while both sit at 0.45 of the 8-bit range). Measured with the CPU recipe on
    LGG's unseen patient: best validation Dice 0.54-0.57 robust, 0.65-0.76 window8
    (benchmarks/RESULTS_cpu_recipe.md). Scanner data (int16, float) has no such window.
    """
    return "window8" if is_8bit(raw_dtype) else "robust"


def window8(czyx: np.ndarray, raw_dtype=None, clip=CLIP_PERCENTILES) -> np.ndarray:
    """(c, z, y, x) -> float32 in [0, 1]: 8-bit data by its own window (x / 255); other data
    (a scanner's volume given to a model trained on 8-bit exports) by the window an exporter
    would draw: per channel, the volume's minimum (its background) at 0 and its foreground's
    upper clip percentile at 1, clipped. Unchanged by any increasing affine map of a scanner
    volume's intensities, like :func:`normalize_robust`."""
    img = np.asarray(czyx)
    if is_8bit(raw_dtype if raw_dtype is not None else img.dtype):
        return img.astype(np.float32) / 255.0
    out = np.zeros(img.shape, np.float32)
    for c in range(img.shape[0]):
        vol = np.asarray(img[c], np.float32)
        finite = np.isfinite(vol)
        if not finite.any():
            out[c] = vol
            continue
        fg = foreground_mask(vol) & finite
        lo = float(vol[finite].min())
        hi = float(np.percentile(vol[fg] if fg.any() else vol[finite], float(clip[1])))
        scaled = (vol - lo) / (hi - lo) if hi > lo else np.zeros_like(vol)
        out[c] = np.where(finite, np.clip(scaled, 0.0, 1.0), vol)
    return out


def legacy_method(dtype) -> str:
    """What ``"auto"`` means in a checkpoint: the old rule, by the data's type."""
    return "scale255" if is_8bit(dtype) else "zscore"


def normalize_intensity(image: np.ndarray, method: str, nonzero: bool = True,
                        clip=CLIP_PERCENTILES, raw_dtype=None) -> np.ndarray:
    """Per-channel intensity normalisation of a whole (c, z, y, x) array, float32.
    ``raw_dtype``: the type the data was stored in (``window8`` goes by it)."""
    if method == "auto":
        method = legacy_method(np.asarray(image).dtype)
    if method == "robust":
        return normalize_robust(image, clip)
    if method == "window8":
        return window8(image, raw_dtype, clip)
    img = np.asarray(image).astype(np.float32, copy=True)
    if method == "none":
        return img
    if method == "scale255":
        return img / 255.0
    if method not in ("zscore", "minmax"):
        from napari_tumorseg.errors import TumorSegError

        raise TumorSegError(f"unknown intensity normalisation {method!r}; known: {', '.join(NORMALIZATIONS)}")
    for c in range(img.shape[0]):
        ch = img[c]
        vals = ch[ch != 0] if nonzero and np.any(ch != 0) and np.any(ch == 0) else ch
        if method == "zscore":
            std = float(vals.std())
            img[c] = (ch - float(vals.mean())) / (std if std > 1e-8 else 1.0)
        else:
            lo, hi = float(ch.min()), float(ch.max())
            img[c] = (ch - lo) / (hi - lo) if hi > lo else ch * 0.0
    return img


def normalize_input(czyx: np.ndarray, prep, raw_dtype=None) -> np.ndarray:
    """The model input's intensities: ``czyx`` (channels already the model's) normalised by
    the rule ``prep`` (a Preprocessing or its checkpoint dict) records. The one function
    training, validation, prediction and the click engines call. ``raw_dtype``: the type of
    the data as read, which ``"auto"`` goes by (averaging RGB channels makes uint8 float)."""
    get = prep.get if hasattr(prep, "get") else (lambda k, d=None: getattr(prep, k, d))
    method = get("normalize", "auto") or "auto"
    if method == "auto":
        method = legacy_method(raw_dtype if raw_dtype is not None else np.asarray(czyx).dtype)
    clip = get("clip_percentiles", None) or CLIP_PERCENTILES
    return normalize_intensity(czyx, str(method), bool(get("zscore_nonzero", True)), tuple(clip),
                               raw_dtype=raw_dtype)
