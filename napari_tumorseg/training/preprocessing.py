"""Preprocessing shared by training and inference, described by a plain dict.

The dict is stored in every checkpoint (``preprocessing``) so inference repeats exactly
what training did: ``apply_preprocessing(image, ckpt["preprocessing"])``. Keys:

* ``dims``: 2 (slice-wise model) or 3 (volumetric model).
* ``size``: in-plane ``[h, w]`` for 2D models (each slice is brought to it), ``None`` to
  keep the native size (3D models train on patches and infer with a sliding window).
* ``spatial``: ``"resize"`` (bilinear for images, nearest for masks) or ``"pad_crop"``
  (centred zero-pad / crop, after normalisation) or ``"none"``.
* ``normalize``: ``"zscore"`` (per volume and channel: statistics over the whole volume,
  restricted to non-zero voxels when ``zscore_nonzero``, so skull-stripped MRI is not
  dominated by the background), ``"scale255"`` (8-bit images to 0-1), ``"minmax"``, or
  ``"none"``. Training resolves ``"auto"`` from the data: uint8 -> scale255, else zscore.
* ``channels``: the model's input channels; ``channel_mode`` how the data's channels are
  brought to it: ``"as_is"``, ``"grayscale"`` (mean of RGB), ``"repeat"`` (grey -> n).
* ``target``: the model output kind, ``region_convention`` (see :data:`REGION_CONVENTIONS`),
  ``class_names``.

Arrays are (c, z, y, x); a 2D image is a volume with z == 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError

PREPROCESSING_VERSION = 1

# Label value sets of each BraTS convention -> the three nested regions the GLIMS paper
# trains on (WT = whole tumour, TC = tumour core, ET = enhancing tumour).
# * "brats": BraTS 2013 OTMultiClass (1 necrosis, 2 oedema, 3 non-enhancing tumour,
#   4 enhancing tumour) and BraTS 2017-2021 (1 NCR/NET, 2 ED, 4 ET; 3 unused): both give
#   WT = {1,2,3,4}, TC = {1,3,4}, ET = {4}.
# * "brats2023": 1 NCR, 2 ED, 3 ET.
# * "brats2012": truth {0, 1 oedema, 2 active tumour}. 2012 does not separate the
#   enhancing part from the core, so ET is a copy of TC (documented approximation).
REGION_CONVENTIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "brats": {"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)},
    "brats2023": {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
    "brats2012": {"WT": (1, 2), "TC": (2,), "ET": (2,)},
}
REGION_NAMES = ("WT", "TC", "ET")


def labels_to_regions(labels: np.ndarray, convention: str = "brats") -> np.ndarray:
    """(R, ...) bool region masks (WT, TC, ET) from an integer label map."""
    try:
        conv = REGION_CONVENTIONS[convention]
    except KeyError:
        known = ", ".join(REGION_CONVENTIONS)
        raise TumorSegError(f"unknown region convention {convention!r}; known: {known}") from None
    labels = np.asarray(labels)
    return np.stack([np.isin(labels, conv[name]) for name in REGION_NAMES])


def guess_region_convention(label_values) -> str:
    """``brats2012`` when the labels are a subset of {0, 1, 2}, else ``brats``."""
    vals = set(int(v) for v in label_values)
    return "brats2012" if vals <= {0, 1, 2} else "brats"


def labels_to_target(labels: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
    """Training target from an integer label map, by the model output kind in ``prep``."""
    kind = prep.get("target", "binary")
    labels = np.asarray(labels)
    if kind == "binary":
        return (labels > 0).astype(np.float32)[None]
    if kind == "regions":
        return labels_to_regions(labels, prep.get("region_convention", "brats")).astype(np.float32)
    if kind == "multiclass":
        n = int(prep.get("num_classes", 2))
        # A binary tumour mask for a 2-class model (SegFormer: 0 background / 1 tumour).
        return ((labels > 0) if n == 2 else np.clip(labels, 0, n - 1)).astype(np.int64)
    raise TumorSegError(f"no pixel target for output kind {kind!r}")


def default_preprocessing(
    dims: int,
    size: int | tuple[int, ...] | None,
    channels: int,
    target: str = "binary",
    spatial: str | None = None,
    normalize: str = "auto",
) -> dict[str, Any]:
    if isinstance(size, int):
        size = [size, size]
    return {
        "version": PREPROCESSING_VERSION,
        "dims": int(dims),
        "size": list(size) if size is not None else None,
        "spatial": spatial or ("resize" if dims == 2 and size is not None else "none"),
        "normalize": normalize,
        "zscore_nonzero": True,
        "channels": int(channels),
        "channel_mode": "as_is",
        "target": target,
    }


def resolve_normalization(dtype) -> str:
    return "scale255" if np.dtype(dtype) == np.uint8 else "zscore"


def as_czyx(image: np.ndarray, layout: str = "auto") -> np.ndarray:
    """Bring an image to (c, z, y, x). ``layout``: auto, yx, yxc, zyx, czyx, cyx."""
    image = np.asarray(image)
    if layout == "auto":
        if image.ndim == 2:
            layout = "yx"
        elif image.ndim == 3 and image.shape[-1] in (3, 4) and image.shape[0] > 4:
            layout = "yxc"
        elif image.ndim == 3:
            layout = "zyx"
        elif image.ndim == 4:
            layout = "czyx"
        else:
            raise TumorSegError(f"cannot interpret an image of shape {image.shape}")
    if layout == "yx":
        return image[None, None]
    if layout == "yxc":
        return np.moveaxis(image, -1, 0)[:, None]
    if layout == "cyx":
        return image[:, None]
    if layout == "zyx":
        return image[None]
    if layout == "czyx":
        return image
    raise TumorSegError(f"unknown image layout {layout!r}")


def adapt_channels(image: np.ndarray, channels: int) -> tuple[np.ndarray, str]:
    """(c, z, y, x) -> (channels, z, y, x); returns the mode used."""
    c = image.shape[0]
    if c == channels:
        return image, "as_is"
    if channels == 1 and c in (3, 4):
        return image[:3].astype(np.float32).mean(axis=0, keepdims=True), "grayscale"
    if c == 1:
        return np.repeat(image, channels, axis=0), "repeat"
    raise TumorSegError(f"the image has {c} channels but the model expects {channels}")


def normalize_intensity(image: np.ndarray, method: str, nonzero: bool = True) -> np.ndarray:
    """Per-channel intensity normalisation over the whole (c, z, y, x) array."""
    img = image.astype(np.float32, copy=True)
    if method == "none":
        return img
    if method == "scale255":
        return img / 255.0
    for c in range(img.shape[0]):
        ch = img[c]
        vals = ch[ch != 0] if nonzero and np.any(ch != 0) and np.any(ch == 0) else ch
        if method == "zscore":
            std = float(vals.std())
            img[c] = (ch - float(vals.mean())) / (std if std > 1e-8 else 1.0)
        elif method == "minmax":
            lo, hi = float(ch.min()), float(ch.max())
            img[c] = (ch - lo) / (hi - lo) if hi > lo else ch * 0.0
        else:
            raise TumorSegError(f"unknown intensity normalisation {method!r}")
    return img


def _resize_planes(arr: np.ndarray, size, mode: str) -> np.ndarray:
    """Resize the last two axes of (n, z, y, x) to ``size``."""
    n, z, h, w = arr.shape
    if (h, w) == tuple(size):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr)).reshape(n * z, 1, h, w)
    if mode == "nearest":
        out = F.interpolate(t.float(), size=tuple(size), mode="nearest-exact")
        out = out.to(t.dtype)
    else:
        down = size[0] < h or size[1] < w
        out = F.interpolate(t.float(), size=tuple(size), mode="bilinear", align_corners=False,
                            antialias=down)
    return out.reshape(n, z, *size).numpy()


def _pad_crop_planes(arr: np.ndarray, size, fill: float = 0.0) -> np.ndarray:
    n, z, h, w = arr.shape
    out = np.full((n, z, *size), fill, dtype=arr.dtype)
    src, dst = [], []
    for have, want in ((h, size[0]), (w, size[1])):
        if have >= want:
            start = (have - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(0, want))
        else:
            start = (want - have) // 2
            src.append(slice(0, have))
            dst.append(slice(start, start + have))
    out[:, :, dst[0], dst[1]] = arr[:, :, src[0], src[1]]
    return out


def apply_preprocessing(image: np.ndarray, prep: dict[str, Any], layout: str = "auto") -> np.ndarray:
    """Model-ready float32 (channels, z, y, x) from a raw image or volume.

    Give the whole volume so z-score statistics are per volume, as in training.
    """
    img = as_czyx(image, layout)
    method = prep.get("normalize", "auto")
    if method == "auto":
        method = resolve_normalization(img.dtype)
    img, _ = adapt_channels(img, int(prep["channels"]))
    img = normalize_intensity(img, method, bool(prep.get("zscore_nonzero", True)))
    return _spatial(img, prep, "linear")


def preprocess_labels(labels: np.ndarray, prep: dict[str, Any]) -> np.ndarray:
    """(z, y, x) integer labels brought to the model's grid (nearest neighbour)."""
    lab = np.asarray(labels)
    if lab.ndim == 2:
        lab = lab[None]
    return _spatial(lab[None], prep, "nearest")[0]


def _spatial(arr: np.ndarray, prep: dict[str, Any], mode: str) -> np.ndarray:
    spatial, size = prep.get("spatial", "none"), prep.get("size")
    if spatial == "none" or size is None or int(prep.get("dims", 2)) != 2:
        return arr
    if spatial == "resize":
        return _resize_planes(arr, size, mode)
    if spatial == "pad_crop":
        return _pad_crop_planes(arr, size)
    raise TumorSegError(f"unknown spatial preprocessing {spatial!r}")


def restore_spatial(pred: np.ndarray, shape_yx: tuple[int, int], prep: dict[str, Any],
                    mode: str = "linear") -> np.ndarray:
    """Bring a (n, z, h, w) prediction on the model grid back to the original (y, x)."""
    spatial, size = prep.get("spatial", "none"), prep.get("size")
    if spatial == "none" or size is None or int(prep.get("dims", 2)) != 2:
        return pred
    if spatial == "resize":
        return _resize_planes(pred, tuple(shape_yx), mode)
    # Undo a centred pad/crop: the inverse is a centred crop/pad back to the original size.
    return _pad_crop_planes(pred, tuple(shape_yx))


def resized_spacing(spacing_zyx, shape_yx, prep: dict[str, Any]) -> tuple[float, float, float]:
    """Voxel spacing (mm) on the model grid, for HD95 in mm after resizing."""
    sz, sy, sx = (float(s) for s in spacing_zyx)
    if prep.get("spatial") == "resize" and prep.get("size") and int(prep.get("dims", 2)) == 2:
        h, w = shape_yx
        return (sz, sy * h / prep["size"][0], sx * w / prep["size"][1])
    return (sz, sy, sx)
