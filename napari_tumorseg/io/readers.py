"""One entry point for every input the plugin opens: DICOM, NIfTI, NRRD, MetaImage,
TIFF/JPG/PNG, folders.

``read_path`` returns Volumes, ``describe`` the same list as ``tumorseg info`` shows it
(cheaply: DICOM, NIfTI, NRRD and MetaImage from their headers), in the same order, so ``--series N``
and ``info``'s row N are the same volume.

A folder is, in this order of precedence: a DICOM study (searched recursively), or its
NIfTI files plus its image slices, or - when it holds neither directly - the cases in
its sub-folders (two levels at most, e.g. kaggle_3m/<patient>/ or brats/<split>/<case>/).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from napari_tumorseg.errors import ReadError, TumorSegError, first_line
from napari_tumorseg.io import dicom as _dicom
from napari_tumorseg.io import images as _images
from napari_tumorseg.io import nifti as _nifti
from napari_tumorseg.io import nrrd_mha as _itk
from napari_tumorseg.io.volume import Volume

INFO_KEYS = ("name", "kind", "shape", "spacing", "modality", "n_files", "source", "channels")
SUPPORTED = ("DICOM, NIfTI (.nii/.nii.gz), NRRD (.nrrd/.seg.nrrd/.nhdr), MetaImage (.mha/.mhd), "
             "TIFF, JPG, PNG, or a folder of them")
_MAX_DEPTH = 2
_DICOM_PROBE = 400  # files looked at before deciding a folder holds no DICOM


@dataclass
class Entry:
    """One volume a path holds: its ``info`` row, how to load it, and what the scan found
    wrong with it (a slice gap, a missing slice) for the user to see before loading."""

    info: dict[str, Any]
    load: Callable[[], Volume]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- detection


def kind_of_path(path: str | Path) -> str | None:
    """'dicom', 'nifti', 'itk', 'image', 'coco' or 'folder' for a path we can open, else None
    (cheap, except that a .json file is parsed to tell COCO from any other JSON)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if not path.is_file():
        return None
    if _nifti.is_nifti_path(path):
        return "nifti"
    if _itk.is_itk_path(path):
        return "itk"
    if _images.is_image_path(path):
        return "image"
    if path.suffix.lower() == ".json":
        from napari_tumorseg.io.coco_json import is_coco_json

        return "coco" if is_coco_json(path) else None
    if path.suffix.lower() in (".txt", ".csv", ".md", ".py", ".zip", ".raw", ".zraw"):
        return None
    if _dicom.is_dicom_file(path) or path.suffix.lower() in _dicom.DICOM_SUFFIXES:
        # A .dcm name is ours to explain, DICOM or not ("x.dcm: not a DICOM file").
        return "dicom"
    return None


def can_read(path: str | Path) -> bool:
    """True when ``path`` is a file or folder this plugin opens (without reading pixels)."""
    path = Path(path)
    kind = kind_of_path(path)
    if kind != "folder":
        return kind is not None
    try:
        return bool(_folder_plan(path, depth=0, probe_only=True))
    except (OSError, TumorSegError):
        return False


# ---------------------------------------------------------------- entries


def _dicom_entries(path: Path) -> list[Entry]:
    from napari_tumorseg.io import dicom

    try:
        series, notes = dicom.scan_dicom(path)
    except TumorSegError:
        raise
    except Exception as err:
        raise ReadError(f"{path.name}: unreadable DICOM ({first_line(err, 120)})") from None
    segs = []
    if path.is_dir() and any("(Segmentation Storage)" in n for n in notes):
        # A SEG saved into the study folder opens with it, on its series' grid.
        from napari_tumorseg.io.dicom_seg import find_dicom_segs

        segs = find_dicom_segs(path)
    if not series and not segs:
        why = f" ({notes[0]})" if notes else ""
        raise ReadError(f"{path}: no DICOM image series found{why}")
    entries = []
    for s in series:
        files = [str(f) for f in s.files]
        source = os.path.commonpath(files) if len(files) > 1 else (files[0] if files else str(path))
        info = {
            "name": s.description or f"series {s.series_number}",
            "kind": "labels" if s.is_mask else "image",
            "shape": [int(v) for v in s.shape],
            "spacing": [float(v) for v in s.spacing],
            "modality": s.modality or "",
            "n_files": len(files),
            "source": source,
            "_affine": dicom.series_affine(s),
        }
        entries.append(Entry(info, lambda s=s: dicom.load_dicom_series(s), list(s.warnings)))
    return entries + [_dicom_seg_entry(p) for p in segs]


def _dicom_seg_entry(path: Path) -> Entry:
    from napari_tumorseg.io.dicom_seg import read_dicom_seg_volume

    vol = read_dicom_seg_volume(path)  # frames and references live in one file: read it once
    return Entry(_volume_info(vol, 1, str(path)), lambda: vol)


def _volume_info(v: Volume, n_files: int, source: str) -> dict[str, Any]:
    return {
        "name": v.name,
        "kind": v.kind,
        "shape": [int(s) for s in v.spatial_shape],
        "spacing": [float(s) for s in v.spacing],
        "modality": v.modality,
        "n_files": n_files,
        "source": source,
        "channels": len(v.channel_names) if v.has_channels else 1,
    }


def _nifti_entry(path: Path) -> Entry:
    head = _nifti.header_info(path)
    name = head["name"]
    maybe_labels = (_nifti.is_label_name(name) or int(head["image"].header["intent_code"]) == 1002
                    or head["dtype"].kind == "b" or head["dtype"].itemsize == 1)
    if maybe_labels and head["channels"] <= 1:
        # Whether a "*seg*" file (or any byte-sized one) really holds labels depends on its
        # values: read it once. Wider integer files are told apart when loaded.
        vol = _nifti.read_nifti(path)
        return Entry(_volume_info(vol, 1, str(path)), lambda: vol)
    sequence = _nifti.guess_sequence(name)
    info = {
        "name": name,
        "kind": "image",
        "shape": [int(s) for s in head["shape"]],
        "spacing": [float(s) for s in head["spacing"]],
        "modality": "MR" if sequence else "",
        "n_files": 1,
        "source": str(path),
        "channels": max(1, int(head["channels"])),
        "_affine": _nifti.nifti_affine_to_zyx(head["image"].affine),
    }
    return Entry(info, lambda: _nifti.read_nifti(path))


def _itk_entry(path: Path) -> Entry:
    head = _itk.header_info(path)
    name = head["name"]
    if (head["segments"] or _nifti.is_label_name(name) or "8-bit" in head["pixel_type"]
            or _itk.itk_suffix(path) == ".seg.nrrd") and head["channels"] <= 1:
        # Labels or not (and the segment names) come with the voxels: read it once.
        vol = _itk.read_itk(path)
        info = _volume_info(vol, 1, str(path))
        info["_affine"] = vol.affine
        return Entry(info, lambda: vol, list(vol.metadata.get("warnings", [])))
    sequence = _nifti.guess_sequence(name)
    info = {
        "name": name,
        "kind": "image",
        "shape": [int(s) for s in head["shape"]],
        "spacing": [float(s) for s in head["spacing"]],
        "modality": "MR" if sequence else "",
        "n_files": 1,
        "source": str(path),
        "channels": max(1, int(head["channels"])),
        "_affine": head["affine"],
    }
    return Entry(info, lambda: _itk.read_itk(path))


def _image_entries(group: _images.ImageGroup) -> list[Entry]:
    cache: dict[str, list[Volume]] = {}

    def volumes() -> list[Volume]:
        if "v" not in cache:
            cache["v"] = _images.read_group(group)
        return cache["v"]

    source = str(group.images[0].parent) if group.stacked else str(group.images[0])
    if not group.stacked:
        vols = volumes()
        n = [1, 1]
        return [Entry(_volume_info(v, n[i], source if i == 0 else str(group.masks[0])),
                      lambda v=v: v) for i, v in enumerate(vols)]

    # A folder of slices: size and colour from three slices (first, middle, last), so that
    # `info` on a folder of a thousand JPGs does not decode them all.
    idx = sorted({0, len(group.images) // 2, len(group.images) - 1})
    sample = _images.ImageGroup(group.name, [group.images[i] for i in idx],
                                [group.masks[i] for i in idx] if group.masks else [], stacked=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the load warns about colour slices, not the probe
        probe = _images.read_group(sample)
    entries = []
    for i, v in enumerate(probe):
        info = _volume_info(v, len(group.images), source)
        info["shape"][0] = len(group.images)
        if i == 1:
            info["n_files"] = sum(m is not None for m in group.masks)
        entries.append(Entry(info, lambda i=i: volumes()[i]))
    return entries


def _folder_plan(folder: Path, depth: int, probe_only: bool = False) -> list[Callable[[], list[Entry]]]:
    """Deferred entry builders for a folder (see the module docstring)."""
    if _dicom.folder_has_dicom(folder, _DICOM_PROBE):
        return [lambda: _dicom_entries(folder)]
    try:
        children = sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                          key=_images.natural_key)
    except OSError as err:
        raise ReadError(f"{folder}: cannot list folder ({err.strerror})") from None
    plan: list[Callable[[], list[Entry]]] = []
    for p in children:
        if p.is_file() and _nifti.is_nifti_path(p):
            plan.append(lambda p=p: [_nifti_entry(p)])
        elif p.is_file() and _itk.is_itk_path(p):
            plan.append(lambda p=p: [_itk_entry(p)])
    if any(p.is_file() and _images.is_image_path(p) for p in children):
        if probe_only:
            plan.append(lambda: [])
        else:
            for group in _images.plan_folder(folder):
                plan.append(lambda g=group: _image_entries(g))
    if plan or depth >= _MAX_DEPTH:
        return plan
    for p in children:
        if p.is_dir():
            sub = _folder_plan(p, depth + 1, probe_only)
            plan.extend(sub)
            if probe_only and plan:
                break
    return plan


def entries(path: str | Path) -> list[Entry]:
    """Every volume ``path`` holds, described but not yet loaded (DICOM, NIfTI).

    Loading gives the volume in the radiological display order (io.orientation), and
    ``info["shape"]`` is that order's shape.
    """
    return [_displayed(e) for e in _entries(path)]


def _displayed(entry: Entry) -> Entry:
    from napari_tumorseg.io.orientation import to_display

    from napari_tumorseg.input_checks import check_geometry

    load = entry.load
    info = dict(entry.info)
    affine = info.pop("_affine", None)
    info["channels"] = int(info.pop("channels", 1) or 1)  # last, as in INFO_KEYS
    # A broken header is named here, before the display order is derived from it.
    check_geometry(info["spacing"], affine if affine is not None else np.eye(4), info["shape"],
                   Path(str(info.get("source", ""))).name or str(info.get("name")))
    if affine is not None:
        from napari_tumorseg.io.orientation import display_axes

        axes = display_axes(affine)
        info["shape"] = [int(info["shape"][a]) for a in axes]
        info["spacing"] = [float(info["spacing"][a]) for a in axes]
    return Entry(info, lambda: to_display(_checked(load())), list(entry.warnings))


def _checked(volume: Volume) -> Volume:
    """The volume, once its grid is one a scanner could produce (input_checks.check_geometry)."""
    from napari_tumorseg.input_checks import check_geometry, source_name

    check_geometry(volume.spacing, volume.affine, volume.spatial_shape, source_name(volume))
    return volume


def _entries(path: str | Path) -> list[Entry]:
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{path}: no such file or folder")
    kind = kind_of_path(path)
    if kind is None:
        suffix = "".join(path.suffixes[-2:]) or path.name
        raise ReadError(f"{path.name}: unsupported file type '{suffix}' (open {SUPPORTED})")
    if kind == "dicom":
        from napari_tumorseg.io import dicom_seg

        if dicom_seg.is_dicom_seg(path):
            return [_dicom_seg_entry(path)]
        return _dicom_entries(path)
    if kind == "nifti":
        return [_nifti_entry(path)]
    if kind == "itk":
        return [_itk_entry(path)]
    if kind == "image":
        return _image_entries(_images.plan_file(path))
    if kind == "coco":
        from napari_tumorseg.io.coco_json import coco_entries

        return [Entry(info, load) for info, load in coco_entries(path)]
    out: list[Entry] = []
    for build in _folder_plan(path, depth=0):
        out.extend(build())
    if not out:
        raise ReadError(f"{path}: no readable images in this folder (open {SUPPORTED})")
    return out


def _guard(func, *args):
    """Run a reader step, turning library exceptions into one-line ReadErrors."""
    try:
        return func(*args)
    except TumorSegError:
        raise
    except MemoryError:
        raise ReadError("not enough memory to load this volume") from None
    except Exception as err:
        raise ReadError(f"could not read {args[0] if args else 'input'}: {first_line(err, 120)}") from None


# ---------------------------------------------------------------- public API


def describe(path: str | Path) -> list[dict[str, Any]]:
    """One dict per volume with exactly the keys of ``tumorseg info --json``."""
    return [dict(e.info) for e in _guard(entries, path)]


def read_path(path: str | Path, series: int | None = None) -> list[Volume]:
    """Read every volume in ``path`` (or only the ``series``-th, 0-based as in ``info``)."""
    found = _guard(entries, path)
    if series is not None:
        if not 0 <= series < len(found):
            raise ReadError(
                f"series {series} does not exist: {Path(path).name} holds {len(found)} "
                f"volume(s), numbered 0-{len(found) - 1}"
            )
        found = [found[series]]
    return [_guard(e.load) for e in found]


def _grid_text(v: Volume) -> str:
    shape = "x".join(str(s) for s in v.spatial_shape)
    spacing = "x".join(f"{s:.3g}" for s in v.spacing)
    return f"{shape} voxels at {spacing} mm"


_SEPARATORS = " _-./"


def common_words(names: list[str]) -> str:
    """The whole words the names start with ("AX" of "AX FLAIR", "AX T2"; not "BRATS_T" of
    "BRATS_T1", "BRATS_T2"), without trailing separators."""
    prefix = os.path.commonprefix(names)
    if any(len(n) > len(prefix) and n[len(prefix)] not in _SEPARATORS for n in names):
        cut = max(prefix.rfind(c) for c in _SEPARATORS)
        prefix = prefix[: cut + 1] if cut >= 0 else ""
    return prefix.rstrip(_SEPARATORS)


def _without_prefix(series: str, case: str) -> str:
    """``series`` without the case name it starts with ("AX FLAIR" in case "AX" -> "FLAIR")."""
    if case and series.startswith(case) and series != case:
        return series[len(case):].lstrip(_SEPARATORS) or series
    return series


def combine_channels(volumes: list[Volume], name: str | None = None) -> Volume:
    """Stack image Volumes of one study that share a grid into one (c, z, y, x) Volume.

    Channels keep the order given. Volumes on different grids (shape, spacing, position
    or orientation) raise a TumorSegError naming the two that differ: nothing is
    resampled.
    """
    if not volumes:
        raise TumorSegError("no volumes to combine")
    for v in volumes:
        if v.kind != "image":
            raise TumorSegError(f"'{v.name}' is a label map; only images combine as channels")
    ref = volumes[0]
    for v in volumes[1:]:
        if v.spatial_shape != ref.spatial_shape or not np.allclose(v.spacing, ref.spacing, atol=1e-3):
            raise TumorSegError(
                f"cannot combine as channels: '{v.name}' is {_grid_text(v)}, "
                f"'{ref.name}' is {_grid_text(ref)} (resampling is not supported)"
            )
        if not np.allclose(v.affine, ref.affine, atol=1e-2):
            shift = float(np.linalg.norm(v.affine[:3, 3] - ref.affine[:3, 3]))
            raise TumorSegError(
                f"cannot combine as channels: '{v.name}' and '{ref.name}' have the same size but "
                f"a different position or orientation (origins {shift:.2f} mm apart; "
                "resampling is not supported)"
            )

    if name is None:
        name = common_words([v.name for v in volumes]) or ref.name
    arrays, channel_names, per_channel = [], [], []
    for v in volumes:
        # The case's name is said once by the layer ("AX FLAIR", not "AX AX FLAIR").
        own = _without_prefix(v.name, name)
        if v.has_channels:
            arrays.extend(list(v.data))
            channel_names.extend(f"{own} {c}".strip() for c in v.channel_names)
        else:
            arrays.append(v.data)
            channel_names.append(v.metadata.get("sequence") or _nifti.guess_sequence(own) or own)
        per_channel.append({"name": v.name, "source": list(v.source), "modality": v.modality})
    if len(set(channel_names)) < len(channel_names):  # two FLAIRs: fall back to full names
        channel_names = [f"{n} ({i})" for i, n in enumerate(channel_names)]
    dtype = np.result_type(*[a.dtype for a in arrays])
    data = np.stack([a.astype(dtype, copy=False) for a in arrays])

    metadata: dict[str, Any] = {"channels": per_channel}
    if "orientation" in ref.metadata:
        # Same grid, so the same reorientation: exports go back to the files' order.
        metadata["orientation"] = ref.metadata["orientation"]
    if "dicom" in ref.metadata:
        # Later DICOM exports reference one source series; the first channel's is as good as any.
        metadata["dicom"] = ref.metadata["dicom"]
    return Volume(
        data=data,
        spacing=ref.spacing,
        affine=ref.affine.copy(),
        name=name,
        kind="image",
        modality=ref.modality,
        source=[s for v in volumes for s in v.source],
        channel_names=channel_names,
        metadata=metadata,
    )


def layer_data(volumes: list[Volume]) -> list[tuple]:
    """napari LayerDataTuples for ``volumes``, in order.

    Several scans opened together would hide one another (each opaque, grey, on one
    grid): one image is shown, the others are listed hidden, one eye-click away. The one
    shown is the FLAIR when the scans name one (the sequence that shows a tumour's whole
    extent, and the click dock's default target), else the first. Label maps always show,
    as outlines over whichever scan is visible.
    """
    from napari_tumorseg.io.nifti import sequence_of

    tuples = [v.layer_data() for v in volumes]
    images = [i for i, (_, kwargs, kind) in enumerate(tuples) if kind == "image"]
    single = [i for i in images if not isinstance(tuples[i][1].get("visible"), list)]
    flair = [i for i in single if sequence_of(volumes[i]) == "FLAIR"]
    show = flair[0] if flair and len(images) > 1 else (images[0] if images else None)
    out = []
    for i, (data, kwargs, layer_type) in enumerate(tuples):
        if layer_type == "image" and not (i == show and isinstance(kwargs.get("visible"), list)):
            kwargs["visible"] = i == show
        out.append((data, kwargs, layer_type))
    return out
