"""Tumour measurements in physical units, lesion by lesion, and a prediction-vs-truth comparison.

Conventions:

* Label arrays are (z, y, x) (a 2D (y, x) array is one slice); every value > 0 is tumour.
  ``spacing`` is (z, y, x) in mm ((y, x) is accepted for a 2D array).
* Volume = voxel count x voxel volume (mm^3) / 1000, in mL.
* Lesions are the 3D connected components of the tumour (all its label values together)
  with 26-connectivity (faces, edges and corners touch): two blobs that touch only
  diagonally are one lesion, as they are to the eye in any reformatted view.
  :mod:`napari_tumorseg.editing` uses the same connectivity. Every component is a lesion,
  however small: nothing is left out (a display may show the largest ones and say how many
  more there are; the dict has them all).
* Longest axial diameter of a lesion: on each axial (z) slice, the maximum Feret (caliper)
  diameter of the lesion's own voxels on that slice (a lesion that reaches a slice in two
  pieces joined on other slices is measured across both: it is one lesion), in mm with
  the in-plane spacing (anisotropic pixels included). It is exact, not sampled over
  angles: the farthest pair of points of a set lies on its convex hull, so it is the
  largest distance between hull vertices of the boundary pixels. The lesion is measured
  on the slice where that diameter is largest (ties: the larger cross-section, then the
  lower z). ``method="centres"`` (default) measures between pixel centres, as a caliper
  placed on the centres of the extreme pixels would; ``"corners"`` (only in
  :func:`slice_diameter` / :func:`largest_axial_diameter`) measures the outer extent of the
  pixel squares (larger by up to one pixel diagonal).
* Perpendicular diameter (RANO / WHO bidimensional): the longest segment that lies wholly
  inside the lesion's cross-section on that slice and runs perpendicular to the longest
  diameter - the longest *chord* along the perpendicular direction, not the width of the
  shadow on that axis (an L-shaped lesion is as thick as its arms, not as wide as the L).
  Perpendicular means exactly 90 degrees in millimetres (on anisotropic pixels that is not
  90 degrees in pixel units): the chord is searched along that one direction, with no
  angular tolerance spent to find a longer one, so the tolerance is 0 degrees and the
  reported ends are 90 degrees from the longest diameter to floating-point precision (the
  tests allow 0.01 degree). Chord ends are not restricted to pixel centres. "Inside" uses
  the pixel-centre convention of the longest diameter: the cross-section is the region
  spanned by its pixel centres (two 4-neighbours join by a segment, a full 2 x 2 block by
  its square), so the perpendicular never exceeds the longest diameter, and a 40 x 20 mm
  rectangle of 1 mm pixels spans 39 x 19 mm centre to centre: longest 43.4 mm (that
  diagonal), perpendicular 21.1 mm (19 mm / cos of the diagonal's angle). The search
  samples parallel chords every quarter of the smaller pixel spacing, samples each every
  quarter too, and refines the chosen chord's ends by bisection (to ~1e-7 pixel); a gap
  in the lesion narrower than a quarter pixel can go unseen. Among equally long chords
  the one nearest the middle of the longest diameter is kept, crossing it where one can
  (the cross a radiologist draws). The bidimensional product is longest x perpendicular,
  in mm^2.
* The case's largest axial diameter is the largest lesion diameter: never a line between
  two lesions.
* BraTS regions (whole tumour WT, tumour core TC, enhancing tumour ET) are reported only
  when the caller says the labels are BraTS (``brats=``) or when the label names say so
  (the region map a regions model predicts, or names such as necrotic / oedema /
  enhancing); a binary mask has no regions. The label conventions are those of
  :mod:`napari_tumorseg.brats`.
* Results are JSON-serialisable: plain floats, ints, strings, lists and dicts; voxel
  positions are (z, y, x) lists in voxel coordinates of the array measured.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist, squareform

from napari_tumorseg import brats as _brats
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.metrics import segmentation_metrics

CONNECTIVITY = 3  # scipy's rank-3 full connectivity = 26-neighbourhood
CONNECTIVITY_NEIGHBOURS = 26
#: How many lesions a text report or a table lists (the dicts hold all of them).
LESION_DISPLAY_CAP = 20
#: Step between sampled perpendicular chords and along them, in units of the smaller pixel spacing.
CHORD_STEP_PX = 0.25
REGION_TITLES = {"WT": "whole tumour (WT)", "TC": "tumour core (TC)", "ET": "enhancing tumour (ET)"}


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
    if len(points) > 64:
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
    if np.count_nonzero(mask2d) <= 64:
        yx = np.argwhere(mask2d).astype(float)  # a speck: every pair is cheaper than a hull
    else:
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


def _inside(mask_f: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Is each (y, x) pixel-unit point inside the region spanned by the pixel centres of
    ``mask_f`` (a zero-padded float 0/1 array)? The bilinear interpolation is 1 exactly
    where every pixel with a non-zero weight is in the mask: on a centre, on the segment
    between two 4-neighbours, in the square of a full 2 x 2 block."""
    return ndimage.map_coordinates(mask_f, [y, x], order=1, mode="constant", cval=0.0) >= 1.0 - 1e-9


def perpendicular_diameter(mask2d, spacing_yx, ends, step_px: float = CHORD_STEP_PX):
    """The longest chord of a 2D mask perpendicular (exactly, in mm) to the segment ``ends``.

    ``ends``: two (y, x) pixel positions (the longest diameter). Returns (length_mm,
    ((y, x), (y, x))): the chord's ends in (fractional) pixel coordinates; length 0 and
    the first end twice when the mask has no chord across that direction (a line one
    pixel thick, a single pixel). See the module docstring for the definition.
    """
    m = np.asarray(mask2d) > 0
    sy, sx = (float(s) for s in spacing_yx)
    (y0, x0), (y1, x1) = ((float(a), float(b)) for a, b in ends)
    start = (y0, x0)
    v = np.array([(y1 - y0) * sy, (x1 - x0) * sx])
    length = float(np.hypot(*v))
    if length == 0.0 or np.count_nonzero(m) < 3:
        return 0.0, (start, start)  # a point or one segment: nothing across it
    d = v / length
    n = np.array([d[1], -d[0]])  # (Y, X) mm, 90 degrees from d
    mask_f = np.pad(m, 1).astype(np.float64)
    pts = np.argwhere(m) * np.array([sy, sx])
    t_all, s_all = pts @ d, pts @ n
    h = step_px * min(sy, sx)
    nt = int(np.ceil((t_all.max() - t_all.min()) / h)) + 1
    ns = int(np.ceil((s_all.max() - s_all.min()) / h)) + 1
    ts = np.linspace(t_all.min(), t_all.max(), nt)
    ss = np.linspace(s_all.min(), s_all.max(), ns)
    step = float(ss[1] - ss[0]) if ns > 1 else 0.0

    def inside_mm(t, s):
        y = (t * d[0] + s * n[0]) / sy + 1.0  # +1: the padding
        x = (t * d[1] + s * n[1]) / sx + 1.0
        return _inside(mask_f, y, x)

    # Longest run of inside samples on each line, chunk by chunk (bounded memory).
    run_len = np.zeros(nt, np.int64)
    run_end = np.zeros(nt, np.int64)
    idx = np.arange(ns)
    chunk = max(1, 2_000_000 // ns)
    for a in range(0, nt, chunk):
        tt = ts[a:a + chunk, None]
        inside = inside_mm(np.broadcast_to(tt, (len(tt), ns)), np.broadcast_to(ss, (len(tt), ns)))
        last_out = np.maximum.accumulate(np.where(inside, -1, idx), axis=1)
        runs = np.where(inside, idx - last_out, 0)
        run_end[a:a + chunk] = runs.argmax(axis=1)
        run_len[a:a + chunk] = runs.max(axis=1)
    if run_len.max() == 0:
        return 0.0, (start, start)
    sampled = (run_len - 1) * step
    cand = np.flatnonzero((run_len > 0) & (sampled >= sampled.max() - 2.0 * step - 1e-12))
    t_c = ts[cand]
    s_hi_in = ss[run_end[cand]]
    s_lo_in = ss[run_end[cand] - run_len[cand] + 1]

    def refine(s_in, direction):
        # Bisection between an inside sample and the next (outside) one, one step further.
        lo, hi = s_in.copy(), s_in + direction * step
        for _ in range(24):
            mid = 0.5 * (lo + hi)
            ok = inside_mm(t_c, mid)
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid)
        return lo

    if step > 0:
        s_hi, s_lo = refine(s_hi_in, 1.0), refine(s_lo_in, -1.0)
    else:
        s_hi, s_lo = s_hi_in, s_lo_in
    lengths = s_hi - s_lo
    best = lengths.max()
    # Equally long chords (a rectangle has a band of them): the one nearest the middle of
    # the longest diameter, crossing it where it can.
    tied = np.flatnonzero(lengths >= best - 1e-6 * max(sy, sx))
    mid_t = 0.5 * (y0 * sy * d[0] + x0 * sx * d[1] + y1 * sy * d[0] + x1 * sx * d[1])
    axis_s = y0 * sy * n[0] + x0 * sx * n[1]
    cross = np.where((s_lo[tied] <= axis_s) & (axis_s <= s_hi[tied]), 0.0, 1.0)
    k = tied[np.lexsort((np.abs(t_c[tied] - mid_t), cross))[0]]

    def to_px(t, s):
        return (float((t * d[0] + s * n[0]) / sy), float((t * d[1] + s * n[1]) / sx))

    # A chord of the region cannot outgrow its farthest pair of centres; min() only removes
    # the bisection's last 1e-9 px.
    return min(float(lengths[k]), length), (to_px(t_c[k], s_lo[k]), to_px(t_c[k], s_hi[k]))


def _lesion_slice(sub: np.ndarray, sp, method: str = "centres"):
    """(diameter_mm, z within ``sub``, (y, x) ends) on the slice of ``sub`` (one lesion's
    boolean box) where its own cross-section is widest; ties: larger area, then lower z."""
    best = None
    for z in range(sub.shape[0]):
        cross = sub[z]
        area = int(np.count_nonzero(cross))
        if area == 0:
            continue
        d, ends = slice_diameter(cross, sp[1:], method)
        key = (round(d, 9), area)
        if best is None or key > best[0]:
            best = (key, d, z, ends)
    return best[1], best[2], best[3]


def _lesion_boxes(labels):
    """(mask, comp, boxes): the tumour, its 26-connected components, their bounding boxes."""
    vol = _as_volume(labels)
    comp, n = label_components(vol)
    return vol, comp, ndimage.find_objects(comp, max_label=n) if n else []


def largest_axial_diameter(labels, spacing, method: str = "centres") -> dict[str, Any]:
    """The largest in-plane diameter of any one lesion, over all axial slices.

    Each lesion (26-connected component) is measured on its own, so the line never runs
    from one lesion to another. Returns ``diameter_mm``, ``slice`` (z index, None when
    empty) and ``endpoints``: two (z, y, x) points in voxel coordinates (e.g. for a napari
    Shapes line).
    """
    sp = _spacing3(spacing)
    _, comp, boxes = _lesion_boxes(labels)
    best: dict[str, Any] = {"diameter_mm": 0.0, "slice": None, "endpoints": None}
    for i, box in enumerate(boxes, start=1):
        d, z, ends = _lesion_slice(comp[box] == i, sp, method)
        z0, y0, x0 = (s.start for s in box)
        if best["slice"] is None or d > best["diameter_mm"]:
            best = {
                "diameter_mm": float(d),
                "slice": int(z + z0),
                "endpoints": [[float(z + z0), float(e[0] + y0), float(e[1] + x0)] for e in ends],
            }
    return best


def brats_regions_for(values, brats: bool | str | None = None, label_names: dict | None = None,
                      file_names=()) -> tuple[str, dict[str, tuple[int, ...]]] | None:
    """(convention, {"WT": labels, "TC": ..., "ET": ...}) for a label map holding ``values``,
    or None when it has no BraTS regions.

    ``brats``: a convention of :data:`napari_tumorseg.brats.CONVENTIONS`, True / ``"auto"``
    to recognise it from the label names, else the ``file_names`` (a BraTS edition's naming),
    else the values (:func:`napari_tumorseg.brats.guess_convention`), or
    None / False to rely on ``label_names`` alone. Labels 1, 2, 3 without 4 are BraTS 2023
    (3 enhancing) or BraTS 2013 (3 non-enhancing): auto refuses to guess. A value outside
    the convention is refused too (it would silently fall out of every region).
    """
    present = sorted({int(v) for v in values} - {0})
    if brats is None or brats is False:
        roles = _brats.regions_from_label_names(label_names)
        if roles is None:
            return None
        if roles == _brats.CONVENTIONS["regionmap"]:
            return "regionmap", roles
        return "from label names", roles
    if brats is True or brats == "auto":
        # What the map's label names say (this plugin's region map, a named BraTS map), else
        # its file's edition naming (BraTS-GLI-…-seg is 2023's): a convention said, not guessed.
        said = _brats.convention_from_label_names(label_names) or _brats.convention_from_names(
            *[str(n) for n in file_names if n])
        brats = said or brats
    if brats is True or brats == "auto":
        if 3 in present and 4 not in present:
            raise TumorSegError(
                "labels 1-3 without 4: BraTS 2023 (3 = enhancing) or BraTS 2013/2017 (3 = non-enhancing)? "
                "name the convention (brats2023 or brats)")
        if not present:
            present = []
        elif len(present) == 1:
            raise TumorSegError(
                f"the mask holds one label ({present[0]}): a binary mask has no BraTS regions "
                "(name a convention if it really is a BraTS map)")
        convention = _brats.guess_convention(present) if present else "brats"
    else:
        convention = str(brats)
    if convention not in _brats.CONVENTIONS:
        known = ", ".join(_brats.CONVENTIONS)
        raise TumorSegError(f"unknown BraTS convention {convention!r}; known: {known}")
    sets = _brats.CONVENTIONS[convention]
    stray = [v for v in present if v not in sets["WT"]]
    if stray:
        raise TumorSegError(
            f"label {stray[0]} is not a {convention} label (its labels: "
            f"{', '.join(map(str, sets['WT']))}): these are not BraTS labels of that convention")
    return convention, dict(sets)


def region_volumes(labels, spacing, regions: dict[str, tuple[int, ...]]) -> dict[str, dict[str, Any]]:
    """{"WT": {"labels", "voxel_count", "volume_ml"}, "TC": ..., "ET": ...}."""
    vol = _as_volume(labels)
    vv = voxel_volume_mm3(spacing) / 1000.0
    values, counts = np.unique(vol, return_counts=True)
    count_of = {int(v): int(c) for v, c in zip(values, counts)}
    out = {}
    for name in _brats.REGION_NAMES:
        n = sum(count_of.get(v, 0) for v in regions[name])
        out[name] = {"labels": [int(v) for v in regions[name]], "voxel_count": int(n), "volume_ml": float(n * vv)}
    return out


#: RANO's measurable lesion: two perpendicular diameters of at least 10 mm, seen on two or more
#: axial slices (Wen et al., J Clin Oncol 2010); smaller ones are listed as non-measurable.
RANO_MIN_MM = 10.0


def rano_measurable(diameter_mm: float, perpendicular_mm: float, n_slices: int) -> bool:
    return diameter_mm >= RANO_MIN_MM and perpendicular_mm >= RANO_MIN_MM and n_slices >= 2


def measure_lesions(labels, spacing, regions: dict[str, tuple[int, ...]] | None = None,
                    lesion_labels=None) -> list[dict[str, Any]]:
    """Every lesion, largest volume first (ties: first in z, y, x order).

    ``lesion_labels``: which label values make the lesions (default every value > 0).
    ``regions``: WT / TC / ET label sets (see :func:`brats_regions_for`): each lesion then
    has its ``regions_ml``. Keys of each lesion: ``labels`` (values in it), ``voxel_count``,
    ``volume_ml``, ``centroid_zyx``, ``slices`` (first, last z), ``bbox_zyx`` (first and
    last voxel), ``slice`` (where it is measured), ``diameter_mm`` and
    ``diameter_endpoints``, ``perpendicular_mm`` and ``perpendicular_endpoints``,
    ``product_mm2``, ``measurable`` (:func:`rano_measurable`); endpoints are two (z, y, x)
    voxel positions.
    """
    vol = _as_volume(labels)
    sp = _spacing3(spacing)
    vv = voxel_volume_mm3(sp) / 1000.0
    sel = vol > 0 if lesion_labels is None else np.isin(vol, [int(v) for v in lesion_labels])
    comp, n = label_components(sel)
    lesions = []
    counts = np.bincount(comp.ravel(), minlength=n + 1) if n else np.zeros(1, np.int64)
    # Single voxels (a noisy prediction has thousands): in bulk, a point has no diameter.
    single = counts == 1
    single[0] = False
    for flat in np.flatnonzero(single[comp.ravel()]) if single.any() else []:
        pos = [int(c) for c in np.unravel_index(flat, comp.shape)]
        value = int(vol.flat[flat])
        point = [float(c) for c in pos]
        lesion = {
            "labels": [value], "voxel_count": 1, "volume_ml": float(vv), "centroid_zyx": point,
            "slices": [pos[0], pos[0]], "bbox_zyx": [pos, list(pos)], "slice": pos[0],
            "diameter_mm": 0.0, "diameter_endpoints": [point, list(point)],
            "perpendicular_mm": 0.0, "perpendicular_endpoints": [point, list(point)], "product_mm2": 0.0,
            "measurable": False,
        }
        if regions is not None:
            lesion["regions_ml"] = {name: float(vv) if value in regions[name] else 0.0
                                    for name in _brats.REGION_NAMES}
        lesions.append(lesion)
    for i, box in enumerate(ndimage.find_objects(comp, max_label=n) if n else [], start=1):
        if single[i]:
            continue
        sub = comp[box] == i
        lab = vol[box][sub]
        off = np.array([s.start for s in box], float)
        coords = np.argwhere(sub)
        count = int(len(coords))
        d, z, ends = _lesion_slice(sub, sp)
        perp, pends = perpendicular_diameter(sub[z], sp[1:], ends)
        zz = float(z + off[0])
        lesion: dict[str, Any] = {
            "labels": [int(v) for v in np.unique(lab)],
            "voxel_count": count,
            "volume_ml": float(count * vv),
            "centroid_zyx": [float(c) for c in coords.mean(axis=0) + off],
            "slices": [int(box[0].start), int(box[0].stop - 1)],
            "bbox_zyx": [[int(s.start) for s in box], [int(s.stop - 1) for s in box]],
            "slice": int(zz),
            "diameter_mm": float(d),
            "diameter_endpoints": [[zz, float(e[0] + off[1]), float(e[1] + off[2])] for e in ends],
            "perpendicular_mm": float(perp),
            "perpendicular_endpoints": [[zz, float(e[0] + off[1]), float(e[1] + off[2])] for e in pends],
            "product_mm2": float(d * perp),
            "measurable": rano_measurable(float(d), float(perp), int(box[0].stop - box[0].start)),
        }
        if regions is not None:
            lesion["regions_ml"] = {name: float(np.count_nonzero(np.isin(lab, regions[name])) * vv)
                                    for name in _brats.REGION_NAMES}
        lesions.append(lesion)
    lesions.sort(key=lambda les: (-les["voxel_count"], les["bbox_zyx"][0]))
    for k, les in enumerate(lesions, start=1):
        les["lesion"] = k
    return lesions


def measure(labels, spacing, label_names: dict[int, str] | None = None, *,
            brats: bool | str | None = None, lesion_labels=None, file_names=()) -> dict[str, Any]:
    """Volume (mL), lesions, largest axial diameter (mm), per-label and BraTS region volumes.

    ``brats``: the labels are BraTS labels (True / "auto": recognise the convention — from
    ``label_names``, the ``file_names``, else the values —, or a convention name); None:
    only when ``label_names`` say so. ``lesion_labels``: the label
    values that make the lesions (and the case volume and diameter), default every value
    > 0; per-label and region volumes always count the whole map.
    """
    vol = _as_volume(labels)
    sp = _spacing3(spacing)
    vv = voxel_volume_mm3(sp)
    values, counts = np.unique(vol[vol > 0], return_counts=True)
    found = brats_regions_for(values, brats, label_names, file_names)
    regions = found[1] if found else None
    lesions = measure_lesions(vol, sp, regions, lesion_labels)
    count = sum(les["voxel_count"] for les in lesions)
    top = max(lesions, key=lambda les: les["diameter_mm"]) if lesions else None  # first of the largest
    out: dict[str, Any] = {
        "spacing_mm": list(sp),
        "voxel_volume_mm3": vv,
        "connectivity": CONNECTIVITY_NEIGHBOURS,
        "voxel_count": int(count),
        "volume_ml": count * vv / 1000.0,
        "largest_axial_diameter_mm": top["diameter_mm"] if top else 0.0,
        "diameter_slice": top["slice"] if top else None,
        "diameter_endpoints": top["diameter_endpoints"] if top else None,  # two (z, y, x), or None
        "diameter_lesion": top["lesion"] if top else None,
        "perpendicular_diameter_mm": top["perpendicular_mm"] if top else 0.0,
        "perpendicular_endpoints": top["perpendicular_endpoints"] if top else None,
        "bidimensional_product_mm2": top["product_mm2"] if top else 0.0,
        "n_components": len(lesions),
        "n_lesions": len(lesions),
        "n_measurable": sum(1 for les in lesions if les["measurable"]),
        "component_volumes_ml": [les["volume_ml"] for les in lesions],
        "lesions": lesions,
    }
    if lesion_labels is not None:
        out["lesion_labels"] = sorted(int(v) for v in lesion_labels)
    if len(values) > 1 or label_names:
        names = {}
        for k, v in (label_names or {}).items():
            try:
                names[int(k)] = str(v)
            except (TypeError, ValueError):
                continue
        out["label_volumes_ml"] = {
            names.get(int(v), f"label {int(v)}"): float(c * vv / 1000.0)
            for v, c in zip(values, counts)
        }
    if found:
        out["regions"] = {"convention": found[0], **region_volumes(vol, sp, regions)}
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
    ("perpendicular_diameter_mm", "  perpendicular", "{:.1f} mm"),
    ("bidimensional_product_mm2", "  product", "{:.0f} mm²"),
    ("diameter_slice", "  on slice", "{}"),
    ("diameter_lesion", "  of lesion", "{}"),
    ("n_components", "Lesions (26-connected components)", "{:d}"),
    ("n_measurable", "  measurable (RANO: both diameters ≥ 10 mm, ≥ 2 slices)", "{:d}"),
    ("dice", "Dice", "{:.4f}"),
    ("iou", "IoU", "{:.4f}"),
    ("precision", "Precision", "{:.4f}"),
    ("recall", "Recall", "{:.4f}"),
    ("hd95_mm", "HD95", "{:.2f} mm"),
    ("pred_volume_ml", "Predicted volume", "{:.3f} mL"),
    ("gt_volume_ml", "Ground-truth volume", "{:.3f} mL"),
    ("volume_difference_ml", "Volume difference", "{:+.3f} mL"),
]


NON_MEASURABLE = "non-measurable (RANO: under 10 × 10 mm or on one slice)"


def lesion_text(les: dict[str, Any]) -> str:
    """One lesion in one line: volume, longest x perpendicular, product, slice, and whether
    RANO would measure it."""
    return (f"{les['volume_ml']:.3f} mL, {les['diameter_mm']:.1f} x {les['perpendicular_mm']:.1f} mm "
            f"({les['product_mm2']:.0f} mm²) on slice {les['slice']}"
            + ("" if les.get("measurable", True) else f"; {NON_MEASURABLE}"))


def lesion_lines(lesions: list[dict[str, Any]], cap: int | None = LESION_DISPLAY_CAP) -> list[str]:
    """"Lesion n: ..." lines for the ``cap`` largest lesions, and how many more there are."""
    shown = lesions if cap is None else lesions[:cap]
    lines = [f"  lesion {les['lesion']}: {lesion_text(les)}" for les in shown]
    if len(lesions) > len(shown):
        rest = lesions[len(shown):]
        lines.append(f"  ... and {len(rest)} more lesions "
                     f"({sum(les['volume_ml'] for les in rest):.3f} mL in all, none larger than "
                     f"{shown[-1]['volume_ml']:.3f} mL)")
    return lines


def format_report(result: dict[str, Any], title: str | None = None, cap: int | None = LESION_DISPLAY_CAP) -> str:
    """Plain text (one "Name: value" per line) of a :func:`measure` and/or :func:`compare` dict;
    ``cap``: how many lesions to list (None: all)."""
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
    if "lesions" in result:
        lines += lesion_lines(result["lesions"], cap)
    elif comps and len(comps) > 1:
        lines.append("  component volumes: " + ", ".join(f"{v:.3f}" for v in comps) + " mL")
    for name, v in (result.get("label_volumes_ml") or {}).items():
        lines.append(f"  {name}: {v:.3f} mL")
    regions = result.get("regions")
    if regions:
        lines.append(f"BraTS regions ({regions['convention']} labels):")
        for name in _brats.REGION_NAMES:
            r = regions[name]
            lines.append(f"  {REGION_TITLES[name]}: {r['volume_ml']:.3f} mL "
                         f"(labels {', '.join(map(str, r['labels']))}; {r['voxel_count']} voxels)")
    if "spacing_mm" in result:
        lines.append("Voxel spacing (z, y, x): " + " x ".join(f"{s:.4g}" for s in result["spacing_mm"]) + " mm")
    return "\n".join(lines)
