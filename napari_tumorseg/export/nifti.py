"""Write (z, y, x) / (c, z, y, x) arrays to NIfTI with their world geometry.

The inverse of io.nifti.read_nifti: axes go back to nibabel's (i, j, k[, t]) order
and the affine columns are permuted back, so re-reading yields the same voxels at
the same RAS+ positions. Written atomically; an existing file is kept unless
``overwrite``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_tumorseg.errors import WriteError
from napari_tumorseg.export.dtypes import file_dtype
from napari_tumorseg.fileio import atomic_path
from napari_tumorseg.io.nifti import EXTENSION_KEY, is_nifti_path, nifti_affine_to_zyx
from napari_tumorseg.io.volume import Volume, affine_from_spacing


def _nifti_dtype(data: np.ndarray) -> np.ndarray:
    # nibabel refuses 64-bit integers without an explicit dtype; few viewers read them.
    return file_dtype(data, (np.uint8, np.int16, np.uint16, np.int32, np.uint32), too_wide=np.float64)


def write_nifti(
    volume_or_array: Volume | np.ndarray,
    path: str | Path,
    affine: np.ndarray | None = None,
    overwrite: bool = False,
    spacing: tuple[float, float, float] | None = None,
    intent: str | None = None,
    label_names: dict | None = None,
    label_colors: dict | None = None,
) -> Path:
    """Write a Volume or a (z, y, x) / (c, z, y, x) array to ``path`` (.nii or .nii.gz).

    ``affine`` maps (z, y, x, 1) to RAS+ mm (the Volume convention); it defaults to the
    Volume's affine, else to one built from ``spacing`` (else 1 mm). ``intent="label"``
    marks a label map (NIFTI_INTENT_LABEL), which the reader opens as labels.
    ``label_names`` ({value: name}) and ``label_colors`` ({value: RGB(A) in 0-1 or 0-255}) go
    into a comment extension the reader reads back: a region map's 1 / 2 / 3 (oedema / core /
    enhancing) are BraTS 2023's core / oedema / enhancing by value, so without its names a
    reopened prediction would be misread.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti_path(path):
        raise WriteError(f"{path.name}: a NIfTI file name must end in .nii or .nii.gz")
    if isinstance(volume_or_array, Volume):
        data = volume_or_array.data
        if affine is None:
            affine = volume_or_array.affine
    else:
        data = volume_or_array
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim not in (3, 4) or data.size == 0:
        raise WriteError(f"cannot write NIfTI from an array of shape {data.shape}")
    if affine is None:
        affine = affine_from_spacing(spacing or (1.0, 1.0, 1.0))
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise WriteError("the affine must be a finite 4x4 matrix")

    axes = (3, 2, 1, 0) if data.ndim == 4 else (2, 1, 0)
    out = _nifti_dtype(data).transpose(axes)
    nib_affine = nifti_affine_to_zyx(affine)  # the column permutation is an involution
    img = nib.Nifti1Image(out, nib_affine)
    # Code 1 (scanner) tells other tools this is a real-world, not an arbitrary, frame.
    img.set_qform(nib_affine, code=1)
    img.set_sform(nib_affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if intent == "label":
        img.header.set_intent("label")
    if label_names:
        img.header.extensions.append(label_names_extension(label_names, label_colors))
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            nib.save(img, str(tmp))
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def label_names_extension(label_names, label_colors=None):
    """A NIfTI comment extension holding ``{value: name}`` (and the colours) as JSON."""
    import json

    import nibabel as nib

    from napari_tumorseg.label_records import label_record

    body = label_record(label_names, label_colors)
    return nib.nifti1.Nifti1Extension("comment", json.dumps({EXTENSION_KEY: body}).encode("utf-8"))
