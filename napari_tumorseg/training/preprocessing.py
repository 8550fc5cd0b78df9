"""Preprocessing shared by training and inference: one frozen :class:`Preprocessing`.

Every checkpoint stores it as a plain dict (``Preprocessing.to_dict()``, loadable with
``torch.load(weights_only=True)``) so inference repeats exactly what training did:
``apply_preprocessing(image, Preprocessing.from_dict(ckpt["preprocessing"]))``. Fields:

* ``dims``: 2 (slice-wise model) or 3 (volumetric model).
* ``size``: in-plane ``(h, w)`` for 2D models (each slice is brought to it), ``None`` to
  keep the native size (3D models train on ``patch_size`` patches and infer with a
  sliding window of that size).
* ``spatial``: ``"resize"`` (bilinear for images, nearest for masks) or ``"pad_crop"``
  (centred zero-pad / crop, after normalisation) or ``"none"``.
* ``normalize``: ``"robust"`` (every new training run: per channel, a z-score inside the
  scan's foreground after clipping it to its ``clip_percentiles``, background 0, whatever
  value the source stored its background as; see :mod:`napari_tumorseg.intensity`),
  ``"zscore"`` (per volume and channel: statistics over the whole volume, restricted to
  non-zero voxels when ``zscore_nonzero``), ``"scale255"`` (8-bit images to 0-1),
  ``"minmax"``, or ``"none"``; ``"auto"`` is resolved from the data: uint8 -> scale255,
  else zscore (the rule of checkpoints written before "robust"; a checkpoint without the
  key keeps it).
* ``clip_percentiles``: the foreground percentiles ``"robust"`` clips to (0.5, 99.5).
* ``channels``: the model's input channels; ``channel_mode`` how the data's channels are
  brought to it: ``"as_is"``, ``"grayscale"`` (mean of RGB), ``"repeat"`` (grey -> n);
  ``channel_names`` the sequences the model was trained on, in order.
* ``target``: the model output kind (:mod:`napari_tumorseg.output_kinds`),
  ``region_convention`` (:mod:`napari_tumorseg.brats`), ``num_classes``, ``class_names``.

The object also reads as a mapping of its dict form (``prep["size"]``, ``{**prep}``), so
code written against the checkpoint's dict keeps working.

Arrays are (c, z, y, x); a 2D image is a volume with z == 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.intensity import (  # noqa: F401 - normalize_intensity's old home
    CLIP_PERCENTILES,
    NORMALIZATIONS,
    normalize_input,
    normalize_intensity,
)
from napari_tumorseg.intensity import legacy_method as resolve_normalization

PREPROCESSING_VERSION = 1
SPATIAL_MODES = ("none", "resize", "pad_crop")
CHANNEL_MODES = ("as_is", "grayscale", "repeat")


def _ints(value, n: int | None, what: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    vals = (value,) * (n or 1) if isinstance(value, (int, np.integer)) else tuple(value)
    try:
        out = tuple(int(v) for v in vals)
    except (TypeError, ValueError):
        raise TumorSegError(f"preprocessing {what} must be whole numbers, got {value!r}") from None
    if (n is not None and len(out) != n) or any(v < 1 for v in out):
        raise TumorSegError(f"preprocessing {what} must be {n} positive numbers, got {value!r}")
    return out


@dataclass(frozen=True)
class Preprocessing(Mapping):
    """How images become model input; see the module doc. Defaults live here only."""

    dims: int
    channels: int
    size: tuple[int, int] | None = None
    spatial: str = "none"
    normalize: str = "auto"
    zscore_nonzero: bool = True
    clip_percentiles: tuple[float, float] = CLIP_PERCENTILES
    channel_mode: str = "as_is"
    channel_names: tuple[str, ...] = ()
    # "refuse": a case must hold every sequence of channel_names; "zeros": a sequence it
    # lacks is a zero channel (a model trained with channel dropout reads any subset).
    missing_channels: str = "refuse"
    target: str = "binary"
    region_convention: str | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] = ()
    patch_size: tuple[int, int, int] | None = None
    version: int = PREPROCESSING_VERSION

    def __post_init__(self) -> None:
        from napari_tumorseg.output_kinds import output_kind

        if self.dims not in (2, 3):
            raise TumorSegError(f"preprocessing dims must be 2 or 3, got {self.dims!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise TumorSegError(f"preprocessing channels must be at least 1, got {self.channels!r}")
        for name, allowed in (("spatial", SPATIAL_MODES), ("normalize", NORMALIZATIONS),
                              ("channel_mode", CHANNEL_MODES)):
            if getattr(self, name) not in allowed:
                raise TumorSegError(f"preprocessing {name} {getattr(self, name)!r} is not one of "
                                    f"{', '.join(allowed)}")
        output_kind(self.target)
        if self.missing_channels not in ("refuse", "zeros"):
            raise TumorSegError(f"preprocessing missing_channels must be refuse or zeros, got {self.missing_channels!r}")
        # Normalise sequences so two equal settings compare equal however they were given.
        object.__setattr__(self, "size", _ints(self.size, 2, "size"))
        object.__setattr__(self, "patch_size", _ints(self.patch_size, 3, "patch_size"))
        object.__setattr__(self, "channel_names", tuple(str(n) for n in self.channel_names))
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        clip = tuple(float(v) for v in (self.clip_percentiles or CLIP_PERCENTILES))
        if len(clip) != 2 or not 0.0 <= clip[0] < clip[1] <= 100.0:
            raise TumorSegError(f"preprocessing clip_percentiles must be two percentiles, low < high, "
                                f"got {self.clip_percentiles!r}")
        object.__setattr__(self, "clip_percentiles", clip)

    @classmethod
    def for_model(cls, dims: int, size, channels: int, target: str = "binary",
                  spatial: str | None = None, normalize: str = "auto", **fields: Any) -> "Preprocessing":
        """A model's preprocessing: 2D models with a size resize to it unless told otherwise."""
        size = _ints(size, 2, "size") if dims == 2 else None
        spatial = spatial or ("resize" if dims == 2 and size is not None else "none")
        return cls(int(dims), int(channels), size, spatial, normalize, target=target, **fields)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Preprocessing":
        """From a checkpoint's dict; keys this version does not know are left out."""
        if isinstance(values, Preprocessing):
            return values
        if not isinstance(values, Mapping):
            raise TumorSegError(f"preprocessing must be a mapping, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        for key in ("dims", "channels"):
            if key not in known:
                raise TumorSegError(f"preprocessing lacks {key!r}")
        for key in ("channel_names", "class_names"):
            known[key] = tuple(known.get(key) or ())
        try:
            known["dims"], known["channels"] = int(known["dims"]), int(known["channels"])
            if known.get("num_classes") is not None:
                known["num_classes"] = int(known["num_classes"])
        except (TypeError, ValueError):
            raise TumorSegError("preprocessing dims, channels and num_classes must be whole numbers") from None
        return cls(**known)

    of = from_dict  # accepts a Preprocessing or its dict: what every function here takes

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, str, int, None): safe for ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        for key in ("size", "patch_size", "channel_names", "class_names", "clip_percentiles"):
            d[key] = list(d[key]) if d[key] is not None else None
        return d

    def replace(self, **changes: Any) -> "Preprocessing":
        return dataclasses.replace(self, **changes)

    def resolved_normalization(self, dtype) -> str:
        return resolve_normalization(dtype) if self.normalize == "auto" else self.normalize

    # Read-only mapping of the dict form, for code written against the checkpoint's dict.
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(f.name for f in dataclasses.fields(self))

    def __len__(self) -> int:
        return len(dataclasses.fields(self))


def default_preprocessing(
    dims: int,
    size: int | tuple[int, ...] | None,
    channels: int,
    target: str = "binary",
    spatial: str | None = None,
    normalize: str = "auto",
) -> dict[str, Any]:
    """:meth:`Preprocessing.for_model` in the checkpoint's dict form (for callers that edit it)."""
    return Preprocessing.for_model(dims, size, channels, target, spatial, normalize).to_dict()


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


def apply_preprocessing(image: np.ndarray, prep: Preprocessing | Mapping, layout: str = "auto") -> np.ndarray:
    """Model-ready float32 (channels, z, y, x) from a raw image or volume.

    Give the whole volume so z-score statistics are per volume, as in training.
    """
    prep = Preprocessing.of(prep)
    img = as_czyx(image, layout)
    raw_dtype = img.dtype
    img, _ = adapt_channels(img, prep.channels)
    img = normalize_input(img, prep, raw_dtype)
    return _spatial(img, prep, "linear")


def preprocess_labels(labels: np.ndarray, prep: Preprocessing | Mapping) -> np.ndarray:
    """(z, y, x) integer labels brought to the model's grid (nearest neighbour)."""
    lab = np.asarray(labels)
    if lab.ndim == 2:
        lab = lab[None]
    return _spatial(lab[None], Preprocessing.of(prep), "nearest")[0]


def _in_plane(prep: Preprocessing) -> bool:
    """True when slices are brought to a fixed in-plane size (2D models with a size)."""
    return prep.spatial != "none" and prep.size is not None and prep.dims == 2


def _spatial(arr: np.ndarray, prep: Preprocessing, mode: str) -> np.ndarray:
    if not _in_plane(prep):
        return arr
    if prep.spatial == "resize":
        return _resize_planes(arr, prep.size, mode)
    return _pad_crop_planes(arr, prep.size)


def restore_spatial(pred: np.ndarray, shape_yx: tuple[int, int], prep: Preprocessing | Mapping,
                    mode: str = "linear") -> np.ndarray:
    """Bring a (n, z, h, w) prediction on the model grid back to the original (y, x)."""
    prep = Preprocessing.of(prep)
    if not _in_plane(prep):
        return pred
    if prep.spatial == "resize":
        return _resize_planes(pred, tuple(shape_yx), mode)
    # Undo a centred pad/crop: the inverse is a centred crop/pad back to the original size.
    return _pad_crop_planes(pred, tuple(shape_yx))


def resized_spacing(spacing_zyx, shape_yx, prep: Preprocessing | Mapping) -> tuple[float, float, float]:
    """Voxel spacing (mm) on the model grid, for HD95 in mm after resizing."""
    prep = Preprocessing.of(prep)
    sz, sy, sx = (float(s) for s in spacing_zyx)
    if prep.spatial == "resize" and _in_plane(prep):
        h, w = shape_yx
        return (sz, sy * h / prep.size[0], sx * w / prep.size[1])
    return (sz, sy, sx)
