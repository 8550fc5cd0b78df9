"""Are two volumes on the same voxel grid? One answer for the CLI, the docks and the exports.

Two masks compared voxel by voxel (Dice, HD95) must be on one grid: the same shape AND
the same place in the scanner. Equal shapes alone are not enough: a mask whose header
puts it 120 mm away has the right number of voxels and the wrong anatomy under each.
:func:`check_same_grid` says why two grids differ (empty string: they agree), in words a
user can act on; :func:`adopt_grid` is the "use the image's grid" answer, for a mask the
user knows was drawn on that image whatever its header says.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import numpy as np

from napari_tumorseg.io.volume import Volume

# Metadata keys of readers whose affine is the file's real geometry. A volume without one
# (a JPG, a plain TIFF) has a made-up affine: only its shape and voxel size can be checked.
_GEOMETRY_KEYS = ("nifti", "dicom", "dicom_seg", "stored_geometry")
DEFAULT_TOL_MM = 0.5


def has_geometry(volume: Volume) -> bool:
    meta = volume.metadata or {}
    return any(k in meta for k in _GEOMETRY_KEYS)


def _corners(volume: Volume) -> np.ndarray:
    """World (RAS mm) positions of the 8 corner voxel centres."""
    shape = volume.spatial_shape
    idx = np.array([[*c, 1.0] for c in product(*[(0, n - 1) for n in shape])])
    return (np.asarray(volume.affine, float) @ idx.T).T[:, :3]


def _grid_text(v: Volume) -> str:
    return "x".join(str(s) for s in v.spatial_shape)


def _spacing_text(v: Volume) -> str:
    return "x".join(f"{s:.4g}" for s in v.spacing)


def check_same_grid(a: Volume, b: Volume, tol_mm: float = DEFAULT_TOL_MM) -> str:
    """Why ``a`` and ``b`` are not on one grid, or "" when they are.

    Same shape (z, y, x), the same voxel size, and - when both carry a real geometry -
    every corner voxel within ``tol_mm`` of its counterpart (which covers origin,
    orientation and slice order at once).
    """
    if a.spatial_shape != b.spatial_shape:
        return f"different sizes: {_grid_text(a)} vs {_grid_text(b)} voxels (z, y, x)"
    if not np.allclose(a.spacing, b.spacing, rtol=1e-3, atol=1e-4):
        return f"different voxel sizes: {_spacing_text(a)} vs {_spacing_text(b)} mm"
    if not (has_geometry(a) and has_geometry(b)):
        return ""
    gap = float(np.max(np.linalg.norm(_corners(a) - _corners(b), axis=1)))
    if gap <= tol_mm:
        return ""
    shift = float(np.linalg.norm(np.asarray(a.affine)[:3, 3] - np.asarray(b.affine)[:3, 3]))
    ra = np.asarray(a.affine)[:3, :3] / np.linalg.norm(np.asarray(a.affine)[:3, :3], axis=0)
    rb = np.asarray(b.affine)[:3, :3] / np.linalg.norm(np.asarray(b.affine)[:3, :3], axis=0)
    cos = np.clip((np.trace(ra.T @ rb) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.degrees(np.arccos(cos)))
    what = f"origins {shift:.1f} mm apart"
    if angle > 0.5:
        what += f", axes turned {angle:.0f} degrees"
    return (f"same size but a different place in the scanner ({what}; corners up to "
            f"{gap:.1f} mm apart)")


def adopt_grid(volume: Volume, reference: Volume) -> Volume:
    """``volume``'s voxels on ``reference``'s grid ("use the image's grid"): the header's
    geometry is replaced, the voxels are not moved. Shapes must match."""
    if volume.spatial_shape != reference.spatial_shape:
        raise ValueError(f"cannot adopt a {_grid_text(reference)} grid for a {_grid_text(volume)} volume")
    meta = {k: v for k, v in volume.metadata.items() if k not in ("orientation", "dicom")}
    for key in ("orientation", "dicom"):
        if key in reference.metadata:
            meta[key] = reference.metadata[key]
    meta["stored_geometry"] = True
    return replace(volume, affine=np.array(reference.affine, dtype=float), spacing=reference.spacing,
                   metadata=meta)
