"""TIFF stacks, 2D slices (TIFF / JPG / PNG) and folders of slices as (z, y, x) Volumes.

- A multi-page TIFF is a z stack; a 2D file is a volume with z == 1.
- RGB stored with R == G == B (how Roboflow/Kaggle ship MRI slices) becomes grayscale;
  true colour stays as a leading channel axis.
- A folder of 2D slices is one stack, ordered by the number in the file name
  (``slice_2`` before ``slice_10``).
- ``NAME_mask.ext`` beside ``NAME.ext`` is that image's mask (the LGG kaggle_3m layout:
  ``TCGA_*_N.tif`` 256x256x3 = pre-contrast, FLAIR, post-contrast, and
  ``TCGA_*_N_mask.tif`` 0/255): they open as one image Volume and one 0/1 labels Volume.
- Voxel size is 1 mm unless the TIFF carries it (our own JSON description, ImageJ
  unit/spacing, or a centimetre resolution). Inch "DPI" values are print settings that
  scanners and converters stamp on anything (72, 96, 300), not pixel sizes, so they are
  ignored.
- A TIFF written by this package also carries its voxel -> RAS affine and whether it is a
  label map (JSON under "tumorseg", see export.tiff), so it reopens on its source's grid
  and as what it was; a folder of such slices takes the first slice's affine.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import ReadError, first_line
from napari_tumorseg.io.nifti import as_labels, is_label_name
from napari_tumorseg.io.volume import Volume

TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_SUFFIXES = TIFF_SUFFIXES + RASTER_SUFFIXES

LGG_CHANNELS = ["pre-contrast", "FLAIR", "post-contrast"]
_MASK_STEM = re.compile(r"^(?P<image>.+)_mask$", re.IGNORECASE)
_LGG_STEM = re.compile(r"^TCGA_", re.IGNORECASE)
_UNIT_MM = {"mm": 1.0, "millimeter": 1.0, "cm": 10.0, "centimeter": 10.0, "m": 1000.0,
            "micron": 1e-3, "um": 1e-3, "\u00b5m": 1e-3, "\\u00b5m": 1e-3, "nm": 1e-6}


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def natural_key(path: str | Path) -> list:
    """Sort key that orders embedded numbers by value: slice_2 < slice_10."""
    parts = re.split(r"(\d+)", Path(path).name.lower())
    return [int(p) if p.isdigit() else p for p in parts]


def mask_partner(path: Path) -> Path | None:
    """The image a ``*_mask`` file belongs to, if it exists beside it."""
    m = _MASK_STEM.match(path.stem)
    if not m:
        return None
    candidate = path.with_name(m.group("image") + path.suffix)
    return candidate if candidate.is_file() else None


def image_partner(path: Path) -> Path | None:
    """The ``*_mask`` file beside an image, if any."""
    if _MASK_STEM.match(path.stem):
        return None
    candidate = path.with_name(path.stem + "_mask" + path.suffix)
    return candidate if candidate.is_file() else None


# ---------------------------------------------------------------- low-level reading


def _tiff_spacing(tif) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x) in mm stored in a TIFF, or None."""
    try:
        shaped = tif.shaped_metadata
    except Exception:
        shaped = None
    for meta in shaped or ():
        sp = meta.get("spacing") if isinstance(meta, dict) else None
        if isinstance(sp, (list, tuple)) and len(sp) == 3:
            factor = _UNIT_MM.get(str(meta.get("unit", "mm")).lower(), 1.0)
            return tuple(float(s) * factor for s in sp)

    page = tif.pages[0]
    tags = page.tags

    def res(tag):
        t = tags.get(tag)
        if t is None:
            return None
        v = t.value
        v = v[0] / v[1] if isinstance(v, tuple) else float(v)
        return v if v > 0 else None

    xres, yres = res("XResolution"), res("YResolution")
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).lower()
    if unit in _UNIT_MM and xres:
        f = _UNIT_MM[unit]
        z = float(ij.get("spacing", 1.0)) * f
        return (z, f / (yres or xres), f / xres)
    unit_tag = tags.get("ResolutionUnit")
    if unit_tag is not None and int(unit_tag.value) == 3 and xres:  # centimetre
        return (1.0, 10.0 / (yres or xres), 10.0 / xres)
    return None


def tiff_geometry(path: str | Path) -> dict:
    """``{"affine": 4x4 array, "kind": str, "label_names": {...}, "label_colors": {...}}``
    stored by export.tiff (any key may be missing); {} for any other file. A malformed
    record is ignored, never trusted."""
    import json

    from napari_tumorseg.label_records import read_label_record

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return {}
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            records = [m for m in (tif.shaped_metadata or ()) if isinstance(m, dict)]
            info = (tif.imagej_metadata or {}).get("Info")
        if isinstance(info, str) and info.lstrip().startswith("{"):
            records.append(json.loads(info))
    except Exception:
        return {}
    for record in records:
        geo = record.get("tumorseg") if isinstance(record, dict) else None
        if not isinstance(geo, dict):
            continue
        out: dict = {}
        try:
            affine = np.asarray(geo.get("affine"), dtype=float)
        except (TypeError, ValueError):
            affine = None
        if (affine is not None and affine.shape == (4, 4) and np.all(np.isfinite(affine))
                and np.all(np.linalg.norm(affine[:3, :3], axis=0) > 0)
                and np.allclose(affine[3], [0, 0, 0, 1])):
            out["affine"] = affine
        if geo.get("kind") in ("labels", "image"):
            out["kind"] = geo["kind"]
        if out.get("kind") == "labels":
            out.update(read_label_record(geo))
        return out
    return {}


def _with_geometry(vol: Volume, geometry: dict) -> Volume:
    """Apply a stored TIFF geometry: the affine (its spacing wins) and the labels kind."""
    if "affine" in geometry:
        vol.metadata["stored_geometry"] = True
        vol.affine = geometry["affine"]
        vol.spacing = tuple(float(v) for v in np.linalg.norm(geometry["affine"][:3, :3], axis=0))
    if geometry.get("kind") == "labels" and vol.kind != "labels" and not vol.has_channels:
        labels = as_labels(vol.data)
        if labels is not None:
            vol.data, vol.kind = labels, "labels"
    if vol.kind == "labels":
        vol.metadata.update({k: geometry[k] for k in ("label_names", "label_colors") if k in geometry})
    return vol


def _to_czyx(arr: np.ndarray, axes: str, name: str) -> np.ndarray:
    """tifffile array with its axes string -> (c, z, y, x)."""
    axes = axes.upper()
    if "Y" not in axes or "X" not in axes:
        raise ReadError(f"{name}: TIFF without image rows and columns ({axes})")
    channel = [i for i, a in enumerate(axes) if a in "CS"]
    stack = [i for i, a in enumerate(axes) if a not in "CSYX"]
    # Leading size-1 axes (T of an ImageJ file) are harmless; two real stack axes are not.
    stack_real = [i for i in stack if arr.shape[i] > 1]
    chan_real = [i for i in channel if arr.shape[i] > 1]
    if len(stack_real) > 1 or len(chan_real) > 1:
        raise ReadError(f"{name}: TIFF with axes {axes} {arr.shape} is not a z stack")
    z_ax = stack_real[0] if stack_real else (stack[0] if stack else None)
    c_ax = chan_real[0] if chan_real else (channel[0] if channel else None)
    order = [a for a in (c_ax, z_ax) if a is not None] + [axes.index("Y"), axes.index("X")]
    drop = [i for i in range(arr.ndim) if i not in order]
    out = arr.transpose(order + drop).reshape([arr.shape[i] for i in order])
    if z_ax is None:
        out = out[None] if c_ax is None else out[:, None]
    if c_ax is None:
        out = out[None]
    return out


def read_raster(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Pixels of a TIFF / JPG / PNG as (c, z, y, x), and the stored spacing if any."""
    path = Path(path)
    if not path.is_file():
        raise ReadError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                arr = series.asarray()
                axes = series.axes
                spacing = _tiff_spacing(tif)
            return _to_czyx(np.asarray(arr), axes, path.name), spacing
        if suffix in RASTER_SUFFIXES:
            import imageio.v3 as iio

            arr = np.asarray(iio.imread(path))
            if arr.ndim == 2:
                return arr[None, None], None
            if arr.ndim == 3:
                return np.moveaxis(arr, -1, 0)[:, None], None
            raise ReadError(f"{path.name}: unexpected image shape {arr.shape}")
    except ReadError:
        raise
    except Exception as err:
        raise ReadError(f"{path.name}: not a readable image ({first_line(err, 120)})") from None
    raise ReadError(f"{path.name}: unsupported image type '{suffix}'")


def _drop_alpha(czyx: np.ndarray) -> np.ndarray:
    if czyx.shape[0] in (2, 4):
        alpha = czyx[-1]
        if alpha.min() == alpha.max():  # a constant alpha carries nothing
            return czyx[:-1]
    return czyx


def _is_gray(czyx: np.ndarray) -> bool:
    return czyx.shape[0] == 1 or all(np.array_equal(czyx[0], czyx[i]) for i in range(1, czyx.shape[0]))


class ImageWarning(UserWarning):
    """Something about a folder of slices the user should know (it was still opened)."""


def _mostly_grey_to_grey(stack: np.ndarray, group: "ImageGroup") -> tuple[np.ndarray, list[str]]:
    """A slice folder whose slices are grey but for a few: all grey, and a note naming them.

    Exported MRI slices are R = G = B; a few colour ones (an annotation burnt in, a
    different converter) would otherwise turn the whole stack into three channels that
    a one-channel model never sees. A stack that is mostly colour stays in colour.
    """
    if stack.shape[0] not in (3, 4) or group.lgg:
        return stack, []
    rgb = stack[:3]
    colour = np.flatnonzero(((rgb[1] != rgb[0]) | (rgb[2] != rgb[0])).any(axis=(1, 2)))
    if colour.size == 0 or 2 * colour.size >= stack.shape[1]:
        return stack, []
    names = [group.images[int(z)].name for z in colour]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    grey = np.round(rgb.astype(np.float32).mean(axis=0))[None].astype(stack.dtype)
    note = (f"{group.name}: {len(names)} of {stack.shape[1]} slices are not grey ({shown}); "
            "opened as grey (mean of R, G, B)")
    return grey, [note]


# ---------------------------------------------------------------- building Volumes


@dataclass
class ImageGroup:
    """What one Volume (plus its mask Volume, if paired) is read from."""

    name: str
    images: list[Path]
    masks: list[Path | None] = field(default_factory=list)  # parallel to images, or empty
    stacked: bool = False  # a folder of 2D slices rather than one file

    @property
    def lgg(self) -> bool:
        return bool(_LGG_STEM.match(self.images[0].name))


def _image_volume(czyx: np.ndarray, group: ImageGroup, spacing, force_channels: bool) -> Volume:
    czyx = _drop_alpha(czyx)
    source = [str(p) for p in group.images]
    lgg = group.lgg and czyx.shape[0] == 3
    metadata: dict = {"files": source} if group.stacked else {}
    if czyx.shape[0] > 1 and (lgg or force_channels or not _is_gray(czyx)):
        names = LGG_CHANNELS if lgg else (["R", "G", "B", "A"][: czyx.shape[0]]
                                         if czyx.shape[0] <= 4 else [str(i) for i in range(czyx.shape[0])])
        return Volume(data=czyx, spacing=spacing, name=group.name, kind="image",
                      modality="MR" if lgg else "", source=source, channel_names=list(names),
                      metadata=metadata)
    data = czyx[0]
    kind = "image"
    if is_label_name(group.name):
        labels = as_labels(data)
        if labels is not None:
            data, kind = labels, "labels"
    return Volume(data=data, spacing=spacing, name=group.name, kind=kind,
                  modality="MR" if lgg else "", source=source, metadata=metadata)


def _mask_volume(planes: list[np.ndarray], group: ImageGroup, spacing) -> Volume:
    data = np.concatenate(planes, axis=0)
    labels = as_labels(data)
    if labels is None:
        raise ReadError(f"{group.name}: the masks are not label images (too many values)")
    files = [str(p) for p in group.masks if p is not None]
    meta = {"files": files} if group.stacked else {}
    missing = [str(img) for img, m in zip(group.images, group.masks) if m is None]
    if missing:
        meta["warnings"] = [f"{len(missing)} slice(s) without a mask were given an empty mask"]
    return Volume(data=labels, spacing=spacing, name=f"{group.name} mask", kind="labels",
                  modality="", source=files, metadata=meta)


def _mask_plane(path: Path, shape_yx: tuple[int, int]) -> np.ndarray:
    czyx, _ = read_raster(path)
    czyx = _drop_alpha(czyx)
    if czyx.shape[-2:] != shape_yx:
        raise ReadError(f"{path.name}: mask size {czyx.shape[-2:]} differs from its image {shape_yx}")
    # Masks saved as RGB keep the object in every channel: any non-zero channel counts.
    return czyx.max(axis=0) if czyx.shape[0] > 1 else czyx[0]


def read_group(group: ImageGroup) -> list[Volume]:
    """Read one planned group: [image] or [image, mask labels]."""
    if not group.stacked:
        czyx, spacing = read_raster(group.images[0])
        spacing = spacing or (1.0, 1.0, 1.0)
        geometry = tiff_geometry(group.images[0])
        vols = [_with_geometry(_image_volume(czyx, group, spacing, force_channels=False), geometry)]
        if group.masks and group.masks[0] is not None:
            plane = _mask_plane(group.masks[0], czyx.shape[-2:])
            if czyx.shape[1] != plane.shape[0]:
                raise ReadError(f"{group.masks[0].name}: mask has {plane.shape[0]} slices, image {czyx.shape[1]}")
            vols.append(_mask_volume([plane], group, spacing))
            if "affine" in geometry:
                vols[-1].affine, vols[-1].spacing = vols[0].affine, vols[0].spacing
        return vols

    planes = []
    spacing = None
    for path in group.images:
        czyx, sp = read_raster(path)
        if czyx.shape[1] != 1:
            raise ReadError(f"{path.name}: a stack inside a folder of slices")
        if planes and czyx.shape != planes[0].shape:
            raise ReadError(
                f"{path.name}: size {tuple(czyx.shape[-2:])}x{czyx.shape[0]} differs from "
                f"{group.images[0].name} {tuple(planes[0].shape[-2:])}x{planes[0].shape[0]}; "
                "a folder of slices must hold one size"
            )
        spacing = spacing or sp
        planes.append(czyx)
    stack = np.concatenate(planes, axis=1)
    spacing = spacing or (1.0, 1.0, 1.0)
    stack, notes = _mostly_grey_to_grey(stack, group)
    # One decision for the whole stack: a black first slice is R=G=B even in colour data.
    geometry = tiff_geometry(group.images[0])
    vols = [_with_geometry(_image_volume(stack, group, spacing, force_channels=not _is_gray(stack)), geometry)]
    if notes:
        vols[0].metadata.setdefault("warnings", []).extend(notes)
        for note in notes:
            warnings.warn(note, ImageWarning, stacklevel=2)
    if group.masks:
        yx = tuple(stack.shape[-2:])
        mplanes = [
            _mask_plane(m, yx) if m is not None else np.zeros((1, *yx), dtype=np.uint8)
            for m in group.masks
        ]
        vols.append(_mask_volume(mplanes, group, spacing))
        if "affine" in geometry:
            vols[-1].affine, vols[-1].spacing = vols[0].affine, vols[0].spacing
    return vols


# ---------------------------------------------------------------- planning


def plan_file(path: str | Path) -> ImageGroup:
    """A single image file, paired with its ``_mask`` partner (or image) when present."""
    path = Path(path)
    partner_image = mask_partner(path)
    if partner_image is not None:  # the user opened the mask: open the pair
        path, mask = partner_image, path
    else:
        mask = image_partner(path)
    return ImageGroup(name=path.stem, images=[path], masks=[mask] if mask else [])


def image_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p)),
        key=natural_key,
    )


def _page_count(path: Path) -> int:
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return 1
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape, axes = tif.series[0].shape, tif.series[0].axes
    except Exception as err:
        raise ReadError(f"{path.name}: not a readable TIFF ({str(err)[:100]})") from None
    return int(np.prod([s for s, a in zip(shape, axes) if a not in "CSYX"] or [1]))


def plan_folder(folder: str | Path) -> list[ImageGroup]:
    """How a folder's images become Volumes: one stack of 2D slices (masks paired by
    name), or, when it holds multi-page TIFFs, one Volume per file."""
    folder = Path(folder)
    files = image_files(folder)
    if not files:
        return []
    masks = {p.stem.lower(): p for p in files if _MASK_STEM.match(p.stem)}
    images = [p for p in files if not _MASK_STEM.match(p.stem)]
    if not images:  # a folder of masks alone is a label stack
        images, masks = list(masks.values()), {}
        images.sort(key=natural_key)
    if any(_page_count(p) > 1 for p in images):
        return [plan_file(p) for p in images]
    paired = [masks.get(p.stem.lower() + "_mask") for p in images]
    return [ImageGroup(name=folder.name, images=images,
                       masks=paired if any(paired) else [], stacked=True)]


def read_image_path(path: str | Path) -> list[Volume]:
    """Read an image file or a folder of slices (see the module docstring)."""
    path = Path(path)
    groups = plan_folder(path) if path.is_dir() else [plan_file(path)]
    if not groups:
        raise ReadError(f"{path}: no TIFF, JPG or PNG images in this folder")
    vols: list[Volume] = []
    for group in groups:
        vols.extend(read_group(group))
    return vols
