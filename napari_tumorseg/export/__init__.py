"""Exports of labels (and probability maps) in every format the plugin writes, behind one call.

:func:`export_labels` dispatches to the writers of this package:

* ``nifti``: :func:`~napari_tumorseg.export.nifti.write_nifti` with the source's affine, so
  the labels land on the scan in any NIfTI viewer;
* ``nrrd``: :func:`~napari_tumorseg.export.nrrd_mha.write_itk` to ``.nrrd`` or 3D Slicer's
  ``.seg.nrrd``, with the source's geometry and the label names as Slicer's segment names;
* ``mha``: the same to ITK MetaImage (``.mha``, or ``.mhd`` with its ``.zraw``);
* ``tiff``: one multi-page stack with the voxel size; ``tiff-slices``: one 2D TIFF per slice
  in the folder ``out``;
* ``dicom-seg``: :func:`~napari_tumorseg.export.dicom_seg.write_dicom_seg` referencing the
  source series; only for sources read from DICOM;
* ``coco``: a COCO JSON with one image per labelled slice (``export.coco_labels``), plus the
  slice images when ``image`` is given.

Nothing is overwritten unless ``overwrite``; each writer writes atomically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_tumorseg.errors import TumorSegError, WriteError
from napari_tumorseg.io.volume import Volume
from napari_tumorseg.label_records import unit_colors

FORMATS = ("nifti", "nrrd", "mha", "tiff", "tiff-slices", "dicom-seg", "coco")


def format_from_path(out: str | os.PathLike) -> str | None:
    """The export format an output name implies (None when it implies none)."""
    name = Path(out).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".nrrd"):
        return "nrrd"
    if name.endswith((".mha", ".mhd")):
        return "mha"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".dcm"):
        return "dicom-seg"
    if name.endswith(".json"):
        return "coco"
    if Path(out).is_dir() or not Path(out).suffix:
        return "tiff-slices"
    return None


def is_dicom_source(source: Volume | None) -> bool:
    return source is not None and bool((source.metadata or {}).get("dicom")) and bool(source.source)


def _stem(source: Volume | None, out: Path) -> str:
    base = source.name if source is not None and source.name else out.name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "labels"
    return f"{stem}_labels" if not stem.endswith(("labels", "mask")) else stem


def _check_labels(labels: np.ndarray, source: Volume | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise TumorSegError(f"labels must be (z, y, x), got shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TumorSegError(f"labels must be integers, got {labels.dtype}")
    if source is not None and tuple(labels.shape) != tuple(source.spatial_shape):
        raise TumorSegError(
            f"labels {labels.shape} are not on the grid of {source.name} {tuple(source.spatial_shape)}"
        )
    return labels


def _coco_image(image: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The source image as COCO slice images want it: (z, y, x) or (z, y, x, 3)."""
    if image is None:
        return None
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim == 4 and img.shape[1:] == tuple(shape):  # (c, z, y, x)
        img = np.moveaxis(img[:3], 0, -1) if img.shape[0] >= 3 else img[0]
    return img


def export_labels(
    labels: np.ndarray,
    fmt: str | None,
    out: str | os.PathLike,
    source: Volume | None = None,
    overwrite: bool = False,
    names: Mapping[int, str] | None = None,
    colors: Mapping[int, Sequence[float]] | None = None,
    algorithm: str | None = None,
    image: np.ndarray | None = None,
    stem: str | None = None,
) -> list[Path]:
    """Write (z, y, x) integer ``labels`` on ``source``'s grid as ``fmt``; return the files written.

    ``fmt`` None: from the name of ``out`` (:func:`format_from_path`). ``names``/``colors``:
    label value -> segment / category name and RGB(A) (DICOM-SEG, COCO). ``algorithm``: the
    model that made the labels (DICOM-SEG records it). ``image``: the source pixels, for the
    COCO slice images. ``stem``: file-name stem of per-slice TIFFs.
    """
    out = Path(out)
    fmt = fmt or format_from_path(out)
    if fmt not in FORMATS:
        raise TumorSegError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    labels = _check_labels(labels, source)
    spacing = source.spacing if source is not None else (1.0, 1.0, 1.0)

    if fmt == "nifti":
        from napari_tumorseg.export.nifti import write_nifti

        from napari_tumorseg.io.orientation import to_source_order

        affine = source.affine if source is not None else None
        if source is not None:
            # The source file's own voxel order, so the mask overlays it voxel for voxel
            # in any tool; the reader reorients it back on reopening.
            labels, source_affine = to_source_order(labels, source)
            affine = source_affine if source_affine is not None else affine
        return [write_nifti(labels, out, affine=affine, overwrite=overwrite, spacing=spacing,
                            intent="label", label_names=dict(names) if names else None,
                            label_colors=dict(colors) if colors else None)]
    if fmt in ("nrrd", "mha"):
        return [_write_itk(labels, fmt, out, source, overwrite, names, colors, labels=True)]
    affine = source.affine if source is not None else None
    if fmt == "tiff":
        from napari_tumorseg.export.tiff import write_tiff_stack

        return [write_tiff_stack(labels, out, spacing=spacing, overwrite=overwrite, affine=affine,
                                 kind="labels", label_names=names, label_colors=colors)]
    if fmt == "tiff-slices":
        from napari_tumorseg.export.tiff import write_tiff_slices

        return write_tiff_slices(labels, out, stem or _stem(source, out), overwrite=overwrite, spacing=spacing,
                                 affine=affine, kind="labels", label_names=names, label_colors=colors)
    if fmt == "dicom-seg":
        if not is_dicom_source(source):
            what = f"{source.name} was not read from DICOM" if source is not None else "no source series given"
            raise TumorSegError(f"DICOM-SEG needs a DICOM source series ({what}); use nifti, tiff or coco")
        from napari_tumorseg.export.dicom_seg import write_dicom_seg

        return [write_dicom_seg(labels, source, out, segment_names=names, segment_colors=colors,
                                overwrite=overwrite, algorithm=algorithm)]
    # coco
    if out.suffix.lower() != ".json":
        raise WriteError(f"{out.name}: a COCO file name must end in .json")
    name = stem or (source.name if source is not None else "labels")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "labels"
    try:
        from napari_tumorseg.export.coco_labels import export_labels_coco
    except ModuleNotFoundError as err:  # the COCO exporter is optional: polygons without images
        if err.name != "napari_tumorseg.export.coco_labels":
            raise
        from napari_tumorseg.coco.from_masks import labels_to_coco, write_coco

        coco = labels_to_coco(labels, None, dict(names or {}), name)
        return [write_coco(coco, out, overwrite)]
    written = [export_labels_coco(labels, out, image=_coco_image(image, labels.shape),
                                  category_names=dict(names or {}), name=name, spacing=spacing,
                                  overwrite=overwrite,
                                  affine=source.affine if source is not None else None)]
    if image is not None:
        with_image = {z for z in range(labels.shape[0]) if labels[z].any()}
        written += sorted(out.parent / f"{name}_z{z:04d}.png" for z in with_image)
    return written


def _write_itk(data: np.ndarray, fmt: str, out: Path, source: Volume | None, overwrite: bool,
               names=None, colors=None, labels: bool = False) -> Path:
    """NRRD / MetaImage in the source file's voxel order with its geometry (as NIfTI)."""
    from napari_tumorseg.export.nrrd_mha import write_itk
    from napari_tumorseg.io.orientation import to_source_order

    suffixes = (".nrrd",) if fmt == "nrrd" else (".mha", ".mhd")
    if not out.name.lower().endswith(suffixes):
        raise WriteError(f"{out.name}: a {fmt.upper()} file name must end in {' or '.join(suffixes)}"
                         + (" (.seg.nrrd for 3D Slicer)" if fmt == "nrrd" else ""))
    affine = source.affine if source is not None else None
    if source is not None:
        data, source_affine = to_source_order(data, source)
        affine = source_affine if source_affine is not None else affine
    if labels and colors:
        colors = unit_colors(colors)
    return write_itk(data, out, affine=affine, overwrite=overwrite,
                     spacing=source.spacing if source is not None else None,
                     label_names=names, label_colors=colors, labels=labels)


def probability_path(out: str | os.PathLike, fmt: str | None = None) -> Path:
    """Where ``--probabilities`` writes beside ``out``: ``<stem>_prob.nii.gz`` (TIFF for TIFF
    exports, ``.nrrd`` / ``.mha`` for NRRD / MetaImage ones)."""
    out = Path(out)
    fmt = fmt or format_from_path(out)
    name = out.name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif", ".dcm", ".json", ".seg.nrrd", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    ext = {"tiff": ".tif", "tiff-slices": ".tif", "nrrd": ".nrrd", "mha": ".mha"}.get(fmt or "", ".nii.gz")
    return out.parent / f"{name}_prob{ext}"


def export_probabilities(
    prob: np.ndarray, out: str | os.PathLike, source: Volume | None = None, overwrite: bool = False
) -> Path:
    """Write a float32 probability map ((z, y, x) or (c, z, y, x)) as NIfTI or TIFF by ``out``'s name."""
    out = Path(out)
    prob = np.asarray(prob, dtype=np.float32)
    spacing = source.spacing if source is not None else (1.0, 1.0, 1.0)
    if source is not None and tuple(prob.shape[-3:]) != tuple(source.spatial_shape):
        raise TumorSegError(f"probabilities {prob.shape} are not on the grid of {source.name}")
    if format_from_path(out) == "nifti":
        from napari_tumorseg.export.nifti import write_nifti

        from napari_tumorseg.io.orientation import to_source_order

        affine = source.affine if source is not None else None
        if source is not None:
            prob, source_affine = to_source_order(prob, source)
            affine = source_affine if source_affine is not None else affine
        return write_nifti(prob, out, affine=affine, overwrite=overwrite, spacing=spacing)
    if format_from_path(out) in ("nrrd", "mha") and not out.name.lower().endswith(".seg.nrrd"):
        return _write_itk(prob, format_from_path(out), out, source, overwrite)
    if format_from_path(out) == "tiff":
        from napari_tumorseg.export.tiff import write_tiff_stack

        return write_tiff_stack(prob, out, spacing=spacing, overwrite=overwrite,
                                affine=source.affine if source is not None else None)
    raise WriteError(f"{out.name}: probabilities are written as .nii.gz, .nii, .nrrd, .mha or .tif")


__all__ = [
    "FORMATS",
    "export_labels",
    "export_probabilities",
    "format_from_path",
    "is_dicom_source",
    "probability_path",
]
