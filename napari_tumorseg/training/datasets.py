"""Training data: find the cases of a data source, split them by patient, serve samples.

Sources, detected from the path by :func:`open_source`:

* ``coco``: a COCO file or Roboflow export (``_annotations.coco.json`` beside the
  images); polygon / RLE masks are rasterised on the fly by :func:`napari_tumorseg.coco.to_masks.rasterize`
  (pycocotools, exactly what ``tumorseg coco2mask`` writes); every category counts as tumour.
* ``pairs``: images with ``*_mask`` partners in the same folder, the LGG kaggle_3m layout
  (``TCGA_<inst>_<patient>_<date>/TCGA_..._<slice>.tif`` + ``_mask.tif``). Slices whose
  names differ only by a trailing ``_<number>`` are one patient volume.
* ``image_mask``: ``images/`` + ``masks/`` (or ``labels/``) folders, files matched by stem.
* ``nifti``: a case folder of NIfTI files (modalities + one label file: seg / truth /
  label / OTMultiClass; ``brainmask`` is ignored), or a folder of such case folders (BraTS).
* ``dicom``: a case folder of DICOM series folders, one of them the mask series (named
  ROI / mask / seg / label); image series on the mask's grid become channels.
* ``classes``: one folder of images per class (the ConvNeXt V2 classifier).
* ``arrays``: in-memory ``(image, mask, spacing, case_id)`` tuples, e.g. the open napari
  layers.

A folder with ``train/`` and ``valid/`` (or ``val/``, ``validation/``) sub-folders keeps
that split. Otherwise :func:`split_refs` splits by *case* (patient / volume; a Roboflow
image and its ``.rf.`` augmented copies are one case) with a fixed seed, so no patient
has slices on both sides.

Several sources train together (``data`` a list of paths, or one string of paths separated
by ``;`` or ``,``): e.g. BraTS 2013 as DeepMedic ships it beside raw BraTS 2017-2023 cases,
each with its own file naming. Their cases are split by *patient*
(:func:`napari_tumorseg.brats.patient_key`: one patient under two editions' names is one
unit), across sources too; a source with its own train / valid folders keeps them. A case's
scans are matched to the run's channels by MR sequence (``--t1ce`` and ``-t1c`` are both
T1c); when the sources hold different scans the run takes the ones all cases share
(:func:`napari_tumorseg.channels.shared_channels`). Each case's labels are read in its own
edition's convention where the target needs it (BraTS WT / TC / ET regions).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_tumorseg.brats import convention_from_names, guess_convention, may_alias, patient_key
from napari_tumorseg.coco.dataset import coco_json_in
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.dicom import folder_has_dicom
from napari_tumorseg.io.images import natural_key
from napari_tumorseg.io.nifti import is_label_name
from napari_tumorseg.output_kinds import output_kind
from napari_tumorseg.training.augment import AugmentConfig, augment
from napari_tumorseg.training.preprocessing import (
    Preprocessing,
    apply_preprocessing,
    preprocess_labels,
    resized_spacing,
)

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": None}
_MASK_DIRS = ("masks", "mask", "labels", "label", "annotations_masks")
_IMAGE_DIRS = ("images", "image", "imgs")
_IMAGE_SUFFIXES = (".tif", ".tiff", ".jpg", ".jpeg", ".png")


@dataclass
class CaseData:
    """One loaded item: an image or volume with its labels (or class index)."""

    image: np.ndarray  # (c, z, y, x), raw intensities
    labels: np.ndarray | None  # (z, y, x) integer labels, None for classification
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (z, y, x) mm
    label: int | None = None  # class index (classification)
    channel_names: list[str] | None = None


@dataclass
class CaseRef:
    """A lazily loaded item. ``case_id`` is the split unit (the patient or volume)."""

    case_id: str
    name: str
    load: Callable[[], CaseData]
    split: str | None = None  # "train" / "val" when the source fixes the split
    channel_names: tuple[str, ...] | None = None  # known before loading (NIfTI file names)
    label_convention: str | None = None  # the BraTS convention its label names or file names say
    source: str = ""  # the data folder it came from
    # Its mask marks the lesion as one object (a TIFF / PNG / COCO / DICOM ROI mask), not
    # BraTS sub-regions: a regions run learns its whole tumour and nothing of core or
    # enhancing from it (see prepare_case).
    lesion_only: bool = False


@dataclass
class DataSource:
    kind: str
    refs: list[CaseRef]
    description: str
    class_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. images without a mask, left out

    @property
    def has_split(self) -> bool:
        return any(r.split for r in self.refs)


# ----------------------------------------------------------------------------- helpers


def case_id_from_name(stem: str) -> str:
    """Roboflow exports name augmented copies ``<orig>_<ext>.rf.<hash>``: one case."""
    base = stem.split(".rf.")[0]
    return re.sub(r"_(jpg|jpeg|png|tif|tiff)$", "", base, flags=re.IGNORECASE)


def _read_raster(path: Path) -> np.ndarray:
    """(c, z, y, x) pixels of a TIFF / JPG / PNG; grey RGB (R=G=B) becomes one channel."""
    from napari_tumorseg.io.images import read_raster

    arr, _ = read_raster(path)
    if arr.shape[0] in (2, 4) and arr[-1].min() == arr[-1].max():
        arr = arr[:-1]  # constant alpha
    if arr.shape[0] == 3 and np.array_equal(arr[0], arr[1]) and np.array_equal(arr[0], arr[2]):
        arr = arr[:1]
    return arr


def _mask_from_raster(path: Path) -> np.ndarray:
    """(z, y, x) integer labels from a mask image (0/255 -> 0/1; RGB masks: any channel)."""
    arr, _ = __import__("napari_tumorseg.io.images", fromlist=["read_raster"]).read_raster(path)
    m = arr.max(axis=0)
    if m.dtype.kind == "f":
        m = np.round(m)
    vals = np.unique(m)
    if set(vals.tolist()) <= {0, 255}:
        m = m > 0
    return m.astype(np.int64)


def _mask_ref(case_id: str, name: str, load, split: str | None, first_mask: Path) -> CaseRef:
    """A ref of an image + mask pair: its mask is one object, unless the mask's own label
    names (a region map this plugin exported as TIFF: 1 oedema, 2 core, 3 enhancing) say a
    BraTS convention; then a regions run learns core and enhancing from it."""
    from napari_tumorseg.brats import convention_from_label_names
    from napari_tumorseg.io.images import tiff_geometry

    convention = convention_from_label_names(tiff_geometry(first_mask).get("label_names"))
    return CaseRef(case_id, name, load, split, label_convention=convention, lesion_only=convention is None)


def _check_same_grid(image: np.ndarray, labels: np.ndarray, name: str) -> None:
    if tuple(image.shape[-3:]) != tuple(labels.shape[-3:]):
        raise TumorSegError(
            f"{name}: image {tuple(image.shape[-2:]) if image.shape[-3] == 1 else tuple(image.shape[-3:])} "
            f"and mask {tuple(labels.shape[-2:]) if labels.shape[-3] == 1 else tuple(labels.shape[-3:])} "
            "differ in size"
        )


# ----------------------------------------------------------------------------- sources


def _coco_refs(json_path: Path, split: str | None) -> list[CaseRef]:
    from napari_tumorseg.coco.dataset import load_coco
    from napari_tumorseg.coco.to_masks import rasterize

    coco = load_coco(json_path)
    refs = []
    for img in coco.images.values():
        path = coco.image_path(img)
        anns = coco.anns_by_image.get(img["id"], [])

        def load(path=path, anns=anns, img=img) -> CaseData:
            image = _read_raster(path)
            h, w = image.shape[-2:]
            if (int(img.get("height", h)), int(img.get("width", w))) != (h, w):
                raise TumorSegError(
                    f"{path.name}: image is {h}x{w} but the COCO file says "
                    f"{img.get('height')}x{img.get('width')}"
                )
            # The same pycocotools rasterisation as COCO -> masks: the model trains on the
            # masks the user sees exported.
            mask = rasterize(anns, h, w) > 0
            return CaseData(image, mask[None].astype(np.int64))

        stem = Path(img["file_name"]).stem
        refs.append(CaseRef(case_id_from_name(stem), img["file_name"], load, split, lesion_only=True))
    return refs


# Pair names, written and read here only. An image ``X.<ext>`` has its mask ``X_mask.<ext>``.
# LGG slices are ``<volume>_<n>`` (one file a slice of volume <volume>); the pairs that
# "add to training set" writes are ``<scan>_case<nnn>`` (one file a whole case).
MASK_SUFFIX = "_mask"
_SLICE_STEM = re.compile(r"^(?P<volume>.*)_(?P<index>\d+)$")
_CASE_STEM = re.compile(r"^(?P<scan>.*)_case(?P<n>\d{3,})$")


def pair_stem(scan: str, n: int) -> str:
    """The file stem of the ``n``-th training pair added for ``scan`` (a safe file name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", scan).strip("._") or "case"
    return f"{safe}_case{int(n):03d}"


def next_pair_paths(folder: Path, scan: str, suffix: str = ".tif") -> tuple[Path, Path]:
    """(image, mask) paths for a new pair of ``scan`` in ``folder``, numbered after every
    pair already there, so an earlier pair is never replaced."""
    folder = Path(folder)
    taken = {int(m.group("n")) for p in folder.glob(f"{pair_stem(scan, 0)[:-3]}*")
             if (m := _CASE_STEM.match(p.stem.removesuffix(MASK_SUFFIX)))}
    stem = pair_stem(scan, max(taken, default=0) + 1)
    return folder / f"{stem}{suffix}", folder / f"{stem}{MASK_SUFFIX}{suffix}"


def _volume_and_case(image: Path) -> tuple[str, str]:
    """(volume key, case id) of a pair's image: added cases stand alone under their scan's
    case id; LGG slices ``P_<n>`` join volume ``P``."""
    stem = image.stem
    if m := _CASE_STEM.match(stem):
        return stem, case_id_from_name(m.group("scan"))
    m = _SLICE_STEM.match(stem)
    volume = m.group("volume") if m else stem
    # LGG patient folders carry the acquisition date; the patient is TCGA_<inst>_<id>.
    lgg = re.match(r"^(TCGA_[A-Z0-9]+_[A-Z0-9]+)", volume)
    return volume, lgg.group(1) if lgg else case_id_from_name(volume)


def _pair_refs(folder: Path, split: str | None) -> list[CaseRef]:
    """``X.tif`` + ``X_mask.tif`` pairs (recursively), grouped by :func:`_volume_and_case`."""
    groups: dict[tuple[Path, str, str], list[tuple[Path, Path]]] = {}
    for mask in sorted(folder.rglob(f"*{MASK_SUFFIX}.*")):
        if mask.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        image = mask.with_name(mask.stem[: -len(MASK_SUFFIX)] + mask.suffix)
        if not image.is_file():
            _UNMATCHED.setdefault(folder, []).append(str(mask.relative_to(folder)))
            continue
        volume, case_id = _volume_and_case(image)
        groups.setdefault((image.parent, volume, case_id), []).append((image, mask))
    refs = []
    for (_, case, case_id), pairs in groups.items():
        pairs.sort(key=lambda p: natural_key(p[0]))

        def load(pairs=pairs) -> CaseData:
            imgs, masks = [], []
            for ip, mp in pairs:
                img, lab = _read_raster(ip), _mask_from_raster(mp)
                _check_same_grid(img, lab, ip.name)
                imgs.append(img)
                masks.append(lab)
            shapes = {i.shape[-2:] for i in imgs}
            chans = {i.shape[0] for i in imgs}
            if len(shapes) > 1 or len(chans) > 1:
                raise TumorSegError(f"{pairs[0][0].parent.name}: slices differ in size or channels")
            return CaseData(np.concatenate(imgs, axis=1), np.concatenate(masks, axis=0))

        refs.append(_mask_ref(case_id, case, load, split, pairs[0][1]))
    return refs


def _image_mask_refs(folder: Path, split: str | None) -> list[CaseRef]:
    img_dir = next(folder / d for d in _IMAGE_DIRS if (folder / d).is_dir())
    mask_dir = next(folder / d for d in _MASK_DIRS if (folder / d).is_dir())
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES}
    refs = []
    unmatched: list[str] = []
    used: set[Path] = set()
    for ip in sorted(img_dir.iterdir(), key=natural_key):
        if ip.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        mp = masks.get(ip.stem) or masks.get(ip.stem + MASK_SUFFIX)
        if mp is None:
            unmatched.append(f"{img_dir.name}/{ip.name}")
            continue
        used.add(mp)

        def load(ip=ip, mp=mp) -> CaseData:
            img, lab = _read_raster(ip), _mask_from_raster(mp)
            _check_same_grid(img, lab, ip.name)
            return CaseData(img, lab)

        refs.append(_mask_ref(case_id_from_name(ip.stem), ip.name, load, split, mp))
    unmatched += [f"{mask_dir.name}/{mp.name}" for mp in sorted(masks.values()) if mp not in used]
    _UNMATCHED.setdefault(folder, []).extend(unmatched)
    return refs


# Files of a folder that found no partner (image without mask, mask without image), per
# folder, collected while the refs are built and reported by open_source.
_UNMATCHED: dict[Path, list[str]] = {}


def _unmatched_note(files: list[str], folder: Path) -> str:
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return f"{len(files)} file(s) in {folder.name} have no partner image/mask and were left out: {shown}"


def check_foreground(masks, where: str) -> None:
    """Refuse a training set whose every mask is empty: the model would learn "no tumour"."""
    if not any(m is not None and np.any(np.asarray(m) > 0) for m in masks):
        raise TumorSegError(
            f"every training mask in {where} is empty: nothing to learn (wrong mask folder, "
            "or labels stored as values the reader does not see?)"
        )


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.lower().endswith((".nii", ".nii.gz")))


def _nifti_case(folder: Path, split: str | None) -> CaseRef | None:
    files = _nifti_files(folder)
    # A skull mask beside the scans is neither the tumour's labels nor an input sequence.
    skull = [p for p in files if "brainmask" in p.name.lower()]
    labels = [p for p in files if is_label_name(p.name) and p not in skull]
    images = [p for p in files if p not in labels and p not in skull]
    if not labels or not images:
        return None

    def load(images=images, label=labels[0]) -> CaseData:
        from napari_tumorseg.io.nifti import read_nifti
        from napari_tumorseg.io.orientation import to_display

        # The viewer's display order, so a model learns the orientation it will be shown.
        vols = [to_display(read_nifti(p)) for p in images]
        lab = to_display(read_nifti(label))
        shapes = {v.data.shape[-3:] for v in vols}
        if len(shapes) > 1:
            raise TumorSegError(f"{folder.name}: modalities differ in size {sorted(shapes)}")
        _check_world_grid(lab, vols[0], folder.name)
        data = np.stack([v.data.astype(np.float32) for v in vols])
        labels_arr = np.round(np.asarray(lab.data, dtype=np.float32)).astype(np.int64)
        _check_same_grid(data, labels_arr, folder.name)
        return CaseData(data, labels_arr, vols[0].spacing,
                        channel_names=[p.name.split(".")[0] for p in images])

    from napari_tumorseg.brats import convention_from_label_names
    from napari_tumorseg.io.nifti import label_names_of

    names = tuple(p.name.split(".")[0] for p in images)
    # The names a labels file carries (a corrected region map) say its convention first.
    convention = (convention_from_label_names(label_names_of(labels[0]))
                  or convention_from_names(folder.name, labels[0].name))
    return CaseRef(folder.name, folder.name, load, split, names, convention)


def _check_world_grid(labels, image, case: str) -> None:
    """The check `tumorseg evaluate` and the docks make: a label map of the scan's size but
    somewhere else would teach the model the wrong voxels."""
    from napari_tumorseg.io.grid import check_same_grid

    reason = check_same_grid(labels, image)
    if reason:
        raise TumorSegError(f"{case}: the label map is not on the grid of the scans: {reason}")


def _nifti_refs(folder: Path, split: str | None) -> list[CaseRef]:
    ref = _nifti_case(folder, split)
    if ref is not None:
        return [ref]
    refs = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        r = _nifti_case(sub, split)
        if r is not None:
            refs.append(r)
    return refs


def _dicom_case(folder: Path, split: str | None) -> CaseRef | None:
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and folder_has_dicom(p)]
    masks = [p for p in subs if is_label_name(p.name)]
    images = [p for p in subs if p not in masks]
    if not masks or not images:
        return None

    def load(images=images, mask=masks[0]) -> CaseData:
        from napari_tumorseg.io.dicom import read_dicom
        from napari_tumorseg.io.orientation import to_display

        mvol = to_display(read_dicom(mask)[0])
        labels_arr = (np.asarray(mvol.data) > 0).astype(np.int64)
        chans, names, spacing = [], [], mvol.spacing
        for p in images:
            vol = to_display(read_dicom(p)[0])
            if tuple(vol.data.shape[-3:]) == tuple(labels_arr.shape):
                _check_world_grid(mvol, vol, folder.name)
                chans.append(np.asarray(vol.data, dtype=np.float32))
                names.append(p.name)
                spacing = vol.spacing
        if not chans:
            raise TumorSegError(
                f"{folder.name}: no image series on the grid of mask series {mask.name} "
                f"{tuple(labels_arr.shape)}"
            )
        return CaseData(np.stack(chans), labels_arr, spacing, channel_names=names)

    return CaseRef(folder.name, folder.name, load, split, lesion_only=True)


def _dicom_refs(folder: Path, split: str | None) -> list[CaseRef]:
    ref = _dicom_case(folder, split)
    if ref is not None:
        return [ref]
    return [r for sub in sorted(p for p in folder.iterdir() if p.is_dir())
            if (r := _dicom_case(sub, split)) is not None]


def _class_refs(folder: Path, split: str | None, class_names: list[str]) -> list[CaseRef]:
    refs = []
    for idx, name in enumerate(class_names):
        sub = folder / name
        if not sub.is_dir():
            continue
        for ip in sorted(sub.iterdir(), key=natural_key):
            if ip.suffix.lower() not in _IMAGE_SUFFIXES:
                continue

            def load(ip=ip, idx=idx) -> CaseData:
                return CaseData(_read_raster(ip), None, label=idx)

            refs.append(CaseRef(case_id_from_name(ip.stem), f"{name}/{ip.name}", load, split))
    return refs


def _class_folders(folder: Path) -> list[str]:
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    names = []
    for sub in subs:
        files = [p for p in sub.iterdir() if p.is_file()]
        imgs = [p for p in files if p.suffix.lower() in _IMAGE_SUFFIXES]
        if imgs and not any(p.stem.lower().endswith(MASK_SUFFIX) for p in imgs):
            names.append(sub.name)
    return names if len(names) >= 2 and len(names) == len(subs) else []


def detect_kind(folder: Path) -> str | None:
    """The layout of one (unsplit) data folder, or None."""
    if folder.is_file():
        return "coco" if folder.suffix.lower() == ".json" else None
    if coco_json_in(folder) is not None:
        return "coco"
    if any(folder.glob(f"*{MASK_SUFFIX}.*")) or any(folder.glob(f"*/*{MASK_SUFFIX}.*")):
        return "pairs"
    names = {p.name.lower() for p in folder.iterdir() if p.is_dir()}
    if names & set(_IMAGE_DIRS) and names & set(_MASK_DIRS):
        return "image_mask"
    if _nifti_files(folder) or any(_nifti_files(p) for p in folder.iterdir() if p.is_dir()):
        return "nifti"
    if any(folder_has_dicom(p) for p in folder.iterdir() if p.is_dir()):
        return "dicom"
    if _class_folders(folder):
        return "classes"
    return None


def _split_dirs(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_dir() and p.name.lower() in SPLIT_NAMES and SPLIT_NAMES[p.name.lower()]:
            found.setdefault(SPLIT_NAMES[p.name.lower()], p)
    return found if "train" in found and "val" in found else {}


def _refs_of(kind: str, folder: Path, split: str | None, class_names: list[str]) -> list[CaseRef]:
    if kind == "coco":
        return _coco_refs(folder, split)
    if kind == "pairs":
        return _pair_refs(folder, split)
    if kind == "image_mask":
        return _image_mask_refs(folder, split)
    if kind == "nifti":
        return _nifti_refs(folder, split)
    if kind == "dicom":
        return _dicom_refs(folder, split)
    if kind == "classes":
        return _class_refs(folder, split, class_names)
    raise TumorSegError(f"unknown data source kind {kind!r}")


def arrays_source(items: Sequence) -> DataSource:
    """In-memory data: ``(image, mask, spacing, case_id)`` tuples or dicts with those keys.

    ``image`` is (y, x), (y, x, 3), (z, y, x) or (c, z, y, x); ``mask`` the labels on the
    same (z, y, x) grid; ``spacing`` (z, y, x) mm or None. A dict may give the mask's
    ``label_names`` ({value: name}): they say its BraTS convention (a region map's).
    """
    from napari_tumorseg.brats import convention_from_label_names
    from napari_tumorseg.training.preprocessing import as_czyx

    refs = []
    for i, item in enumerate(items):
        channel_names = convention = None
        if isinstance(item, dict):
            image, mask = item["image"], item["mask"]
            spacing, case_id = item.get("spacing"), item.get("case_id")
            channel_names = item.get("channel_names")
            convention = convention_from_label_names(item.get("label_names"))
        else:
            image, mask, spacing, case_id = (list(item) + [None, None])[:4]
        case_id = str(case_id if case_id is not None else f"case{i}")

        def load(image=image, mask=mask, spacing=spacing, case_id=case_id, names=channel_names) -> CaseData:
            # A multi-channel case (the session's volume) is (c, z, y, x) by construction.
            img = np.asarray(image) if names else as_czyx(np.asarray(image))
            lab = np.asarray(mask)
            lab = lab[None] if lab.ndim == 2 else lab
            _check_same_grid(img, lab, case_id)
            sp = tuple(float(s) for s in spacing)[-3:] if spacing is not None else (1.0, 1.0, 1.0)
            if len(sp) == 2:
                sp = (1.0, *sp)
            return CaseData(img, np.round(lab).astype(np.int64), sp,
                            channel_names=list(names) if names else None)

        refs.append(CaseRef(case_id, case_id, load, label_convention=convention))
    if not refs:
        raise TumorSegError("no images given to train on")
    return DataSource("arrays", refs, f"{len(refs)} in-memory image(s)")


def data_paths(data: Any) -> list[Path] | None:
    """The data folders of a path source: one path, a list of paths, or one string of paths
    separated by ``;`` or ``,`` (when that string is not itself a path); None for in-memory
    data."""
    if isinstance(data, (str, os.PathLike)):
        items = [data]
    elif isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, os.PathLike)) for d in data):
        items = list(data)
    else:
        return None
    out: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if isinstance(item, str) and not path.exists() and re.search(r"[;,]", item):
            out += [Path(part.strip()).expanduser() for part in re.split(r"[;,]", item) if part.strip()]
        else:
            out.append(path)
    return out


def open_source(data: Any) -> DataSource:
    """Find every training item in ``data``: a path, several (see :func:`data_paths`), or
    in-memory tuples; see the module doc."""
    paths = data_paths(data)
    if paths is None:
        if isinstance(data, (list, tuple)):
            return arrays_source(data)
        raise TumorSegError(f"cannot read training data from a {type(data).__name__}")
    if len(paths) == 1:
        return _open_path(paths[0])
    seen: dict[Path, Path] = {}
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise TumorSegError(f"data folder {p} is given twice")
        seen[key] = p
    sources = [_open_path(p) for p in paths]
    kinds = [s.kind for s in sources]
    if "classes" in kinds and len(set(kinds)) > 1:
        raise TumorSegError("class folders (a classifier's data) cannot be mixed with segmentation data")
    class_names = sources[0].class_names
    if any(s.class_names != class_names for s in sources):
        raise TumorSegError("the class folders differ between the data sources: "
                            + "; ".join(", ".join(s.class_names) for s in sources))
    kind = kinds[0] if len(set(kinds)) == 1 else "+".join(sorted(set(kinds)))
    refs = [r for s in sources for r in s.refs]
    n_patients = len({patient_key(r.case_id) for r in refs})
    desc = (f"{len(sources)} data sources, {len(refs)} item(s) of {n_patients} patient(s): "
            + "; ".join(s.description for s in sources))
    return DataSource(kind, refs, desc, class_names, [w for s in sources for w in s.warnings])


def _open_path(path: Path) -> DataSource:
    """Every training item of one data folder (or COCO file)."""
    if not path.exists():
        raise TumorSegError(f"data path {path} does not exist")
    splits = _split_dirs(path) if path.is_dir() else {}
    folders = list(splits.items()) if splits else [(None, path)]
    refs: list[CaseRef] = []
    kinds, class_names = set(), []
    notes: list[str] = []
    for split, folder in folders:
        kind = detect_kind(folder)
        if kind is None:
            raise TumorSegError(
                f"no training data found in {folder}: expected a COCO export, image + *_mask "
                "pairs, images/ + masks/ folders, NIfTI or DICOM cases, or one folder per class"
            )
        if kind == "classes" and not class_names:
            class_names = _class_folders(folder)
        kinds.add(kind)
        _UNMATCHED.pop(folder, None)
        refs += _refs_of(kind, folder, split, class_names)
        unmatched = _UNMATCHED.pop(folder, [])
        if unmatched:
            notes.append(_unmatched_note(unmatched, folder))
    if len(kinds) > 1:
        raise TumorSegError(f"{path}: train and validation folders differ in layout ({sorted(kinds)})")
    if not refs:
        why = f" ({notes[0]})" if notes else ""
        raise TumorSegError(f"no image with a mask found in {path}{why}")
    kind = kinds.pop()
    n_cases = len({r.case_id for r in refs})
    desc = f"{kind} data in {path}: {len(refs)} item(s) of {n_cases} case(s)"
    for r in refs:
        r.source = str(path)
    return DataSource(kind, refs, desc, class_names, notes)


def split_refs(
    source: DataSource, val_fraction: float, seed: int, val_cases: Sequence[str] | None = None
) -> tuple[list[CaseRef], list[CaseRef], list[str]]:
    """(train, val, warnings): split by patient, never by slice; a fixed seed.

    The unit is the patient (:func:`napari_tumorseg.brats.patient_key` of the case id: one
    patient under two BraTS editions' names is one unit), across every source. Items a source
    puts in its own train / valid folders stay there, and so does every other item of their
    patients; a validation item whose patient is also in training is dropped (reported in
    the warnings). ``val_cases`` (case ids) are validation, with their patients, as if a
    folder placed them. The patients no folder places are split with ``val_fraction`` and
    the seed.
    """
    warnings: list[str] = list(source.warnings)
    groups: dict[str, list[CaseRef]] = {}
    for r in source.refs:
        groups.setdefault(patient_key(r.case_id), []).append(r)
    fixed_train = {k for k, refs in groups.items() if any(r.split == "train" for r in refs)}
    named = {patient_key(str(c)) for c in (val_cases or ())}
    unknown = sorted(named - set(groups))
    if unknown:
        raise TumorSegError(f"val_cases names {unknown[0]}, which is not a case of the data")
    fixed_train = fixed_train - named
    fixed_val = {k for k, refs in groups.items() if any(r.split == "val" for r in refs)} - fixed_train
    fixed_val |= named
    free = [k for k in groups if k not in fixed_train and k not in fixed_val]
    # In the order of their first case id: with one case a patient, exactly the order of
    # the sorted case ids, as before patients were grouped.
    free.sort(key=lambda k: min(r.case_id for r in groups[k]))
    rng = np.random.default_rng(seed)
    order = [free[i] for i in rng.permutation(len(free))]
    n_val = 0
    if val_fraction > 0 and free:
        n_val = max(0 if fixed_val else 1, int(round(val_fraction * len(free))))
        n_val = min(n_val, len(free) - (0 if fixed_train else 1))
        if n_val <= 0 and not fixed_val:
            warnings.append("one case only: no validation split (validation needs a second patient)")
            n_val = 0
    val_keys = fixed_val | set(order[:max(n_val, 0)])
    train, val = [], []
    dropped = 0
    for r in source.refs:
        key = patient_key(r.case_id)
        if key in val_keys:
            val.append(r)
        elif r.split == "val" and key in fixed_train:
            dropped += 1
        else:
            train.append(r)
    if dropped:
        warnings.append(f"{dropped} validation item(s) dropped: their case is also in training")
    train_keys = {patient_key(r.case_id) for r in train}
    if may_alias(train_keys, val_keys):
        warnings.append(
            "training and validation hold BraTS cases of different releases (2013 / 2017 / "
            "2021-2023 names): a 2013 patient reappears renumbered in later releases and the "
            "data carry no mapping, so one patient may be on both sides")
    return train, val, warnings


# ----------------------------------------------------------------------------- datasets


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """Seed of one sample's augmentation / patch draw: independent of workers and resumes."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


@dataclass
class _Prepared:
    case_id: str
    name: str
    image: np.ndarray  # (c, z, y, x) float32 on the model grid
    target: np.ndarray | None  # (r, z, y, x) float32 or (z, y, x) int64
    labels: np.ndarray | None  # (z, y, x) int labels on the grid
    spacing: tuple[float, float, float]
    label: int | None = None


def case_channels(data: CaseData, names, where: str, missing: str = "refuse") -> np.ndarray:
    """A case's (c, z, y, x) image with its channels in the run's order ``names``, matched
    by MR sequence (sources store them in different orders and hold different scans);
    unchanged when either side's names do not say sequences. ``missing="zeros"``: a
    sequence the case lacks is a zero channel."""
    from napari_tumorseg.channels import channel_indices, take_channels

    if not names or not data.channel_names:
        return data.image
    idx = channel_indices(list(data.channel_names), list(names), where, missing)
    if idx is None or idx == list(range(data.image.shape[0])):
        return data.image
    return take_channels(data.image, idx)


def lesion_only_regions(labels: np.ndarray) -> np.ndarray:
    """The (3, ...) region target of a one-object mask: the lesion is the whole tumour; core
    and enhancing are unknown (NaN: the loss, the metrics and the click simulator leave
    them out for this sample), not absent, which would teach "no core here"."""
    wt = (np.asarray(labels) > 0).astype(np.float32)
    unknown = np.full_like(wt, np.nan)
    return np.stack([wt, unknown, unknown])


def name_channels(source: DataSource, names_by_folder: dict) -> None:
    """Give the items of some data folders the sequence names their files do not carry
    (LGG kaggle_3m's TIFFs: pre-contrast T1, FLAIR, post-contrast T1c as R, G, B), so a run
    matches their channels by sequence like a NIfTI case's (``case_channels``)."""
    if not names_by_folder:
        return
    wanted = {Path(k).expanduser().resolve(): tuple(str(n) for n in v) for k, v in names_by_folder.items()}
    found = set()
    for ref in source.refs:
        names = wanted.get(Path(ref.source).resolve()) if ref.source else None
        if names is None:
            continue
        found.add(Path(ref.source).resolve())
        ref.channel_names = names
        ref.load = _named_load(ref.load, names, ref.name)
    missing = [str(k) for k in wanted if k not in found]
    if missing:
        raise TumorSegError(f"source_channels names {missing[0]}, which is not one of the data folders")


def _named_load(load, names: tuple[str, ...], where: str):
    def named() -> CaseData:
        data = load()
        if data.image.shape[0] != len(names):
            raise TumorSegError(f"{where}: {data.image.shape[0]} channel(s), but source_channels "
                                f"names {len(names)} ({', '.join(names)})")
        return replace(data, channel_names=list(names))
    return named


def prepare_case(ref: CaseRef, prep: Preprocessing | dict[str, Any],
                 per_case_convention: bool = False) -> _Prepared:
    """Load a case and bring it to the model's grid, channels, intensities and target.

    ``per_case_convention``: region targets read each case's labels in the convention its
    names say (or its label values suggest), not the run's one (several BraTS editions).
    """
    prep = Preprocessing.of(prep)
    data = ref.load()
    image = apply_preprocessing(case_channels(data, prep.channel_names, ref.name, prep.missing_channels),
                                prep, layout="czyx")
    if data.labels is None:
        return _Prepared(ref.case_id, ref.name, image, None, None, data.spacing, data.label)
    labels = preprocess_labels(data.labels, prep)
    kind = output_kind(prep.target)
    if kind.name == "regions" and ref.lesion_only:
        target = lesion_only_regions(labels)
        spacing = resized_spacing(data.spacing, data.image.shape[-2:], prep)
        return _Prepared(ref.case_id, ref.name, image, target, labels, spacing)
    if per_case_convention and prep.region_convention is not None:
        convention = ref.label_convention or guess_convention(np.unique(data.labels))
        prep = prep.replace(region_convention=convention)
    target = kind.target(labels, prep)
    spacing = resized_spacing(data.spacing, data.image.shape[-2:], prep)
    return _Prepared(ref.case_id, ref.name, image, target, labels, spacing)


class SegDataset(torch.utils.data.Dataset):
    """2D samples: every image, or slices of volumes (for 2D models).

    Training keeps every slice with foreground and ``empty_fraction`` of the empty ones
    (drawn once with the seed), so BraTS volumes are not dominated by empty slices.
    Items are ``(index, seed)`` pairs (see :class:`EpochPlan`).
    """

    def __init__(self, cases: list[_Prepared], augment_cfg: AugmentConfig | None = None,
                 empty_fraction: float = 1.0, seed: int = 0):
        self.cases = cases
        self.augment_cfg = augment_cfg or AugmentConfig(enabled=False)
        rng = np.random.default_rng([seed, 7])
        self.items: list[tuple[int, int]] = []
        for ci, c in enumerate(cases):
            nz = c.image.shape[1]
            fg = c.labels.reshape(nz, -1).any(axis=1) if c.labels is not None else np.ones(nz, bool)
            for z in range(nz):
                if fg[z] or nz == 1 or empty_fraction >= 1.0 or rng.random() < empty_fraction:
                    self.items.append((ci, z))

    def __len__(self) -> int:
        return len(self.items)

    def spacing(self, i: int) -> tuple[float, float]:
        ci, _ = self.items[i]
        return self.cases[ci].spacing[1:]

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        ci, z = self.items[i]
        c = self.cases[ci]
        x = torch.from_numpy(np.ascontiguousarray(c.image[:, z]))
        t = c.target
        y = torch.from_numpy(np.ascontiguousarray(t[:, z] if t.ndim == 4 else t[z]))
        if seed is not None and self.augment_cfg.enabled:
            x, y = augment(x, y, torch.Generator().manual_seed(seed), self.augment_cfg)
        return x, y


class PatchDataset(torch.utils.data.Dataset):
    """3D patches (GLIMS): ``patches_per_volume`` per case and epoch.

    A patch is centred on a random foreground voxel with probability ``fg_prob`` (foreground
    oversampling as in nnU-Net, here 2/3 because a tumour fills little of a brain), else
    anywhere; volumes smaller than the patch are zero-padded. Without a seed (validation)
    the patch is centred on the tumour's centre of mass, deterministically.
    """

    def __init__(self, cases: list[_Prepared], patch: Sequence[int], patches_per_volume: int = 1,
                 fg_prob: float = 0.67, augment_cfg: AugmentConfig | None = None):
        self.cases = cases
        self.patch = tuple(int(p) for p in patch)
        self.fg_prob = fg_prob
        self.augment_cfg = augment_cfg or AugmentConfig(enabled=False)
        self.items = [(ci, k) for ci in range(len(cases)) for k in range(patches_per_volume)]
        self._fg = [np.argwhere(c.labels > 0) if c.labels is not None else np.zeros((0, 3), int)
                    for c in cases]

    def __len__(self) -> int:
        return len(self.items)

    def spacing(self, i: int) -> tuple[float, float, float]:
        return self.cases[self.items[i][0]].spacing

    def _centre(self, ci: int, gen: torch.Generator | None) -> np.ndarray:
        shape = np.array(self.cases[ci].image.shape[1:])
        fg = self._fg[ci]
        if gen is None:
            return fg.mean(axis=0).round().astype(int) if len(fg) else shape // 2
        if len(fg) and float(torch.rand((), generator=gen)) < self.fg_prob:
            return fg[int(torch.randint(0, len(fg), (), generator=gen))]
        return np.array([int(torch.randint(0, int(s), (), generator=gen)) for s in shape])

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        ci, _ = self.items[i]
        c = self.cases[ci]
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        centre = self._centre(ci, gen)
        shape = np.array(c.image.shape[1:])
        size = np.array(self.patch)
        start = np.clip(centre - size // 2, 0, np.maximum(shape - size, 0))
        sl = tuple(slice(int(s), int(s + n)) for s, n in zip(start, size))
        img = c.image[(slice(None),) + sl]
        tgt = c.target[(slice(None),) + sl] if c.target.ndim == 4 else c.target[sl]
        pad = [(0, int(max(n - h, 0))) for n, h in zip(size, img.shape[1:])]
        if any(p[1] for p in pad):
            img = np.pad(img, [(0, 0)] + pad)
            tgt = np.pad(tgt, ([(0, 0)] if tgt.ndim == 4 else []) + pad)
        x, y = torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(np.ascontiguousarray(tgt))
        if gen is not None and self.augment_cfg.enabled:
            x, y = augment(x, y, gen, self.augment_cfg)
        return x, y


class ClassDataset(torch.utils.data.Dataset):
    """Whole images with a class index (the classifier)."""

    def __init__(self, cases: list[_Prepared], augment_cfg: AugmentConfig | None = None):
        self.cases = cases
        self.augment_cfg = augment_cfg or AugmentConfig(enabled=False)
        self.items = list(range(len(cases)))

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, key):
        i, seed = key if isinstance(key, tuple) else (key, None)
        c = self.cases[i]
        x = torch.from_numpy(np.ascontiguousarray(c.image[:, 0]))
        if seed is not None and self.augment_cfg.enabled:
            dummy = torch.zeros(x.shape[-2:], dtype=torch.int64)
            x, _ = augment(x, dummy, torch.Generator().manual_seed(seed), self.augment_cfg)
        return x, torch.tensor(int(c.label), dtype=torch.int64)


class EpochPlan:
    """The sample order of one epoch: a seeded permutation, sharded across DDP ranks.

    Like ``DistributedSampler`` (padding by repetition so every rank gets the same number
    of batches), but each entry carries its own augmentation seed, and the plan can start
    at a given batch, which is how a cancelled epoch resumes exactly.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1):
        order = (np.random.default_rng([seed, epoch]).permutation(n) if shuffle
                 else np.arange(n)).tolist()
        if world_size > 1:
            total = int(math.ceil(n / world_size)) * world_size
            order += order[: total - n]
            order = order[rank:total:world_size]
        self.entries = [(int(i), sample_seed(seed, epoch, pos * world_size + rank))
                        for pos, i in enumerate(order)]
        self.batch_size = batch_size

    @property
    def n_batches(self) -> int:
        return int(math.ceil(len(self.entries) / self.batch_size))

    def batch(self, b: int) -> list[tuple[int, int]]:
        return self.entries[b * self.batch_size: (b + 1) * self.batch_size]
