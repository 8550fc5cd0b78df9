"""Tumour measurements in physical units, and a prediction-vs-truth comparison.

Conventions:

* Label arrays are (z, y, x) (a 2D (y, x) array is one slice); every value > 0 is tumour.
  ``spacing`` is (z, y, x) in mm ((y, x) is accepted for a 2D array).
* Volume = voxel count x voxel volume (mm^3) / 1000, in mL.
* Components are 3D connected components with 26-connectivity (faces, edges and corners
  touch): two blobs that touch only diagonally are one lesion, as they are to the eye in
  any reformatted view. :mod:`napari_tumorseg.editing` uses the same connectivity.
* Largest axial diameter: the maximum Feret (caliper) diameter over the axial (z) slices,
  in mm using the in-plane spacing. It is exact, not sampled over angles: the farthest pair
  of points of a set lies on its convex hull, so it is the largest distance between hull
  vertices. ``method="centres"`` (default) measures between pixel centres, as a caliper
  placed on the centres of the extreme pixels would; ``"corners"`` measures the outer
  extent of the pixel squares (larger by up to one pixel diagonal).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist, squareform

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.metrics import segmentation_metrics

CONNECTIVITY = 3  # scipy's rank-3 full connectivity = 26-neighbourhood


def _as_volume(labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise TumorSegError(f"labels must be (y, x) or (z, y, x), got shape {arr.shape}")
    return arr


def _spacing3(spacing, ndim: int = 3) -> tuple[float, float, float]:
    if spacing is None:
        return (1.0, 1.0, 1.0)
    sp = tuple(float(s) for s in np.atleast_1d(spacing))
    if len(sp) == 2:
        sp = (1.0, *sp)
    if len(sp) != 3 or not all(s > 0 and math.isfinite(s) for s in sp):
        raise TumorSegError(f"spacing must be 3 positive numbers (z, y, x) in mm, got {spacing}")
    return sp  # type: ignore[return-value]


def voxel_volume_mm3(spacing) -> float:
    return float(np.prod(_spacing3(spacing)))


def volume_ml(labels, spacing) -> float:
    """Volume of all voxels > 0 in mL."""
    return np.count_nonzero(_as_volume(labels)) * voxel_volume_mm3(spacing) / 1000.0


def label_components(labels) -> tuple[np.ndarray, int]:
    """(component ids, count) of the tumour (values > 0), 26-connected in 3D."""
    mask = _as_volume(labels) > 0
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY)
    comp, n = ndimage.label(mask, structure=structure)
    return comp, int(n)


def component_volumes_ml(labels, spacing) -> list[float]:
    """Volume of every connected component, largest first, in mL."""
    comp, n = label_components(labels)
    if n == 0:
        return []
    counts = np.bincount(comp.ravel(), minlength=n + 1)[1:]
    vv = voxel_volume_mm3(spacing) / 1000.0
    return sorted((float(c * vv) for c in counts), reverse=True)


def _feret(points: np.ndarray) -> tuple[float, int, int]:
    """Largest pairwise distance of 2D points (mm) and the indices of the pair."""
    if len(points) == 1:
        return 0.0, 0, 0
    candidates = np.arange(len(points))
    if len(points) > 3:
        try:
            candidates = ConvexHull(points).vertices
        except QhullError:
            # Collinear points: the farthest pair are extremes along one of the axes.
            candidates = np.unique(
                [points[:, 0].argmin(), points[:, 0].argmax(), points[:, 1].argmin(), points[:, 1].argmax()]
            )
    sub = points[candidates]
    d = squareform(pdist(sub))
    i, j = np.unravel_index(int(d.argmax()), d.shape)
    return float(d[i, j]), int(candidates[i]), int(candidates[j])


def slice_diameter(mask2d: np.ndarray, spacing_yx, method: str = "centres"):
    """Max Feret diameter (mm) of one 2D mask and its endpoints as (y, x) pixel coordinates."""
    mask2d = np.asarray(mask2d) > 0
    if not mask2d.any():
        return 0.0, None
    # Only boundary pixels can be hull vertices.
    edge = mask2d & ~ndimage.binary_erosion(mask2d)
    yx = np.argwhere(edge).astype(float)
    if method == "corners":
        offs = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
        yx = (yx[:, None, :] + offs[None]).reshape(-1, 2)
    elif method != "centres":
        raise TumorSegError(f"method must be 'centres' or 'corners', not {method!r}")
    dist, i, j = _feret(yx * np.asarray(spacing_yx, float))
    return dist, (tuple(yx[i]), tuple(yx[j]))


def largest_axial_diameter(labels, spacing, method: str = "centres") -> dict[str, Any]:
    """The largest in-plane diameter over all axial slices.

    Returns ``diameter_mm``, ``slice`` (z index, None when empty) and ``endpoints``: two
    (z, y, x) points in voxel coordinates (e.g. for a napari Shapes line).
    """
    vol = _as_volume(labels) > 0
    sp = _spacing3(spacing)
    best: dict[str, Any] = {"diameter_mm": 0.0, "slice": None, "endpoints": None}
    for z in np.flatnonzero(vol.any(axis=(1, 2))):
        d, ends = slice_diameter(vol[z], sp[1:], method)
        if best["slice"] is None or d > best["diameter_mm"]:
            best = {
                "diameter_mm": d,
                "slice": int(z),
                "endpoints": tuple((float(z), *e) for e in ends),
            }
    return best


def measure(labels, spacing, label_names: dict[int, str] | None = None) -> dict[str, Any]:
    """Volume (mL), largest axial diameter (mm), components, and per-label volumes."""
    vol = _as_volume(labels)
    sp = _spacing3(spacing)
    vv = voxel_volume_mm3(sp)
    comps = component_volumes_ml(vol, sp)
    diam = largest_axial_diameter(vol, sp)
    out: dict[str, Any] = {
        "spacing_mm": list(sp),
        "voxel_volume_mm3": vv,
        "voxel_count": int(np.count_nonzero(vol)),
        "volume_ml": np.count_nonzero(vol) * vv / 1000.0,
        "largest_axial_diameter_mm": diam["diameter_mm"],
        "diameter_slice": diam["slice"],
        "diameter_endpoints": diam["endpoints"],  # two (z, y, x) voxel positions, or None
        "n_components": len(comps),
        "component_volumes_ml": comps,
    }
    values, counts = np.unique(vol[vol > 0], return_counts=True)
    if len(values) > 1 or label_names:
        names = label_names or {}
        out["label_volumes_ml"] = {
            names.get(int(v), f"label {int(v)}"): float(c * vv / 1000.0)
            for v, c in zip(values, counts)
        }
    return out


def compare(pred, gt, spacing) -> dict[str, Any]:
    """Agreement of a prediction with a ground truth (both binarised > 0), with volumes."""
    p = _as_volume(pred) > 0
    g = _as_volume(gt) > 0
    if p.shape != g.shape:
        raise TumorSegError(f"prediction {p.shape} and ground truth {g.shape} are on different grids")
    sp = _spacing3(spacing)
    # One slice is a 2D image: a 3D erosion would make all of it surface.
    if p.shape[0] == 1:
        m = segmentation_metrics(p[0], g[0], sp[1:])
    else:
        m = segmentation_metrics(p, g, sp)
    vv = voxel_volume_mm3(sp) / 1000.0
    pv, gv = np.count_nonzero(p) * vv, np.count_nonzero(g) * vv
    return {
        "dice": m["dice"],
        "iou": m["iou"],
        "precision": m["precision"],
        "recall": m["recall"],
        "hd95_mm": m["hd95"],
        "pred_volume_ml": pv,
        "gt_volume_ml": gv,
        "volume_difference_ml": pv - gv,
    }


_LINES = [
    ("volume_ml", "Tumour volume", "{:.3f} mL"),
    ("voxel_count", "Voxels", "{:d}"),
    ("largest_axial_diameter_mm", "Largest axial diameter", "{:.1f} mm"),
    ("diameter_slice", "  on slice", "{}"),
    ("n_components", "Components", "{:d}"),
    ("dice", "Dice", "{:.4f}"),
    ("iou", "IoU", "{:.4f}"),
    ("precision", "Precision", "{:.4f}"),
    ("recall", "Recall", "{:.4f}"),
    ("hd95_mm", "HD95", "{:.2f} mm"),
    ("pred_volume_ml", "Predicted volume", "{:.3f} mL"),
    ("gt_volume_ml", "Ground-truth volume", "{:.3f} mL"),
    ("volume_difference_ml", "Volume difference", "{:+.3f} mL"),
]


def format_report(result: dict[str, Any], title: str | None = None) -> str:
    """Plain text (one "Name: value" per line) of a :func:`measure` and/or :func:`compare` dict."""
    lines = [title] if title else []
    for key, label, fmt in _LINES:
        if key not in result or result[key] is None:
            continue
        val = result[key]
        if isinstance(val, float) and not math.isfinite(val):
            text = "undefined (one mask is empty)" if math.isinf(val) else "n/a"
        else:
            text = fmt.format(val)
        lines.append(f"{label}: {text}")
    comps = result.get("component_volumes_ml")
    if comps and len(comps) > 1:
        lines.append("  component volumes: " + ", ".join(f"{v:.3f}" for v in comps) + " mL")
    for name, v in (result.get("label_volumes_ml") or {}).items():
        lines.append(f"  {name}: {v:.3f} mL")
    if "spacing_mm" in result:
        lines.append("Voxel spacing (z, y, x): " + " x ".join(f"{s:.4g}" for s in result["spacing_mm"]) + " mm")
    return "\n".join(lines)
