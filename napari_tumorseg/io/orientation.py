"""Radiological display order: every volume is reoriented on load, exports go back.

Display index order (z, y, x), the same for every reader:

* z runs superior -> inferior (slice 0 is the vertex),
* y runs anterior -> posterior (row 0 is anterior: anterior is up),
* x runs patient right -> left (column 0 is the patient's right: right is on screen-left).

In nibabel's axis codes for the (x, y, z) = (i, j, k) axes this is "LPI". Why z runs
downwards: napari draws the first displayed axis top to bottom, so with z pointing to
the feet the coronal view (z, x) and the sagittal view (z, y) show the head up, the
patient's right on the left and anterior on the left, with no camera flip, while the
axial view (y, x) shows anterior up and right on the left.

napari's world frame is fixed for every layer: world (w0, w1, w2) = (I, P, L) in mm, i.e.
``(-S, -A, -R)`` of RAS+ reversed (:data:`WORLD_FROM_RAS`). It is right-handed, so the 3D
view is never a mirror image. A layer's data-to-world map is ``WORLD_FROM_RAS @
Volume.affine``, split into napari's ``scale``, ``translate`` and a residual rotation
``affine`` that is the identity unless the acquisition was oblique
(:func:`layer_geometry`).

``Volume.affine`` stays the exact voxel -> RAS map of the reoriented array, so anything
computed from it (exports, metrics, world positions) is right. ``Volume.metadata
["orientation"]`` records how the array was reoriented from the file's own order
(:func:`to_source_order` / :func:`from_source_order`), so exports can write masks in the
source's voxel order: a NIfTI mask that overlays its scan voxel for voxel, a DICOM-SEG
whose frames reference the right source instances.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # io.volume imports this module: a run-time import back would be a cycle
    from napari_tumorseg.io.volume import Volume

# nibabel orientation of the display index axes (z, y, x): [RAS axis, direction] each;
# z -> axis 2 (S) pointing to I, y -> axis 1 (A) pointing to P, x -> axis 0 (R) pointing to L.
DISPLAY_ORNT = np.array([[2.0, -1.0], [1.0, -1.0], [0.0, -1.0]])

# RAS+ (x, y, z) mm -> napari world (w0, w1, w2) = (I, P, L) mm. Its own inverse.
WORLD_FROM_RAS = np.array(
    [[0.0, 0.0, -1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)

_META_KEY = "orientation"


def axis_codes(affine: np.ndarray) -> str:
    """Where each index axis (z, y, x) of ``affine`` points, as RAS letters ("IPL" for display)."""
    import nibabel.orientations as nio

    ornt = nio.io_orientation(np.asarray(affine, float))
    return "".join(nio.ornt2axcodes(ornt, labels=(("L", "R"), ("P", "A"), ("I", "S"))))


def _transform(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation transform from ``affine``'s index order to the display order."""
    import nibabel.orientations as nio

    src = nio.io_orientation(np.asarray(affine, float))
    return nio.ornt_transform(src, DISPLAY_ORNT)


def _is_identity(transform: np.ndarray) -> bool:
    return bool(np.array_equal(transform[:, 0], [0, 1, 2]) and np.all(transform[:, 1] == 1))


def _apply(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply an orientation transform to the last three axes of ``array``."""
    import nibabel.orientations as nio

    arr = np.asarray(array)
    lead = arr.ndim - 3
    moved = np.moveaxis(arr, list(range(lead)), list(range(3, arr.ndim))) if lead else arr
    out = nio.apply_orientation(moved, transform)
    if lead:
        out = np.moveaxis(out, list(range(3, arr.ndim)), list(range(lead)))
    return np.ascontiguousarray(out)


def _new_affine(affine: np.ndarray, transform: np.ndarray, shape) -> np.ndarray:
    """Affine of the array after ``transform`` (``shape``: the (z, y, x) shape before)."""
    import nibabel.orientations as nio

    return np.asarray(affine, float) @ nio.inv_ornt_aff(transform, tuple(shape))


def display_axes(affine: np.ndarray) -> list[int]:
    """For each display axis (z, y, x), the index axis of ``affine`` it comes from."""
    out = [0, 0, 0]
    for src_axis, (dst_axis, _) in enumerate(_transform(affine)):
        out[int(dst_axis)] = src_axis
    return out


def display_shape(shape, affine: np.ndarray) -> tuple[int, int, int]:
    """The (z, y, x) shape a volume of ``shape`` and ``affine`` has once reoriented."""
    shape = tuple(int(s) for s in shape)[-3:]
    transform = _transform(affine)
    out = [0, 0, 0]
    for src_axis, (dst_axis, _) in enumerate(transform):
        out[int(dst_axis)] = shape[src_axis]
    return tuple(out)  # type: ignore[return-value]


def to_display(volume: "Volume") -> "Volume":
    """``volume`` reoriented to the display order, with its exact affine (a no-op when it is).

    The record of the reorientation (``metadata["orientation"]``) is kept even when
    nothing moved, so exports know the volume is in display order.
    """
    if _META_KEY in volume.metadata:
        return volume  # already reoriented (a Volume rebuilt from a layer, a second call)
    transform = _transform(volume.affine)
    record: dict[str, Any] = {
        "source_affine": np.asarray(volume.affine, float).tolist(),
        "source_shape": [int(s) for s in volume.spatial_shape],
        "source_codes": axis_codes(volume.affine),
        "transform": transform.astype(int).tolist(),
    }
    meta = {**volume.metadata, _META_KEY: record}
    if _is_identity(transform):
        return replace(volume, metadata=meta)
    data = _apply(volume.data, transform)
    affine = _new_affine(volume.affine, transform, volume.spatial_shape)
    # The reader's own voxel size, permuted (not recomputed: DICOM's comes from positions).
    spacing = tuple(float(volume.spacing[a]) for a in display_axes(volume.affine))
    return replace(volume, data=data, affine=affine, spacing=spacing, metadata=meta)


def orientation_record(volume_or_metadata: Any) -> dict | None:
    meta = getattr(volume_or_metadata, "metadata", volume_or_metadata) or {}
    return meta.get(_META_KEY)


def to_source_order(array: np.ndarray, volume_or_metadata: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``array`` on a reoriented volume's grid -> (the same voxels in the source file's order,
    the source affine). Without a record (a volume never reoriented): ``(array, None)``."""
    record = orientation_record(volume_or_metadata)
    arr = np.asarray(array)
    if not record:
        return arr, None
    import nibabel.orientations as nio

    forward = np.asarray(record["transform"], float)
    source_affine = np.asarray(record["source_affine"], float)
    if _is_identity(forward):
        return arr, source_affine
    # Inverse: from the display orientation back to the source's own orientation.
    back = nio.ornt_transform(DISPLAY_ORNT, nio.io_orientation(source_affine))
    if tuple(arr.shape[-3:]) != display_shape(record["source_shape"], source_affine):
        raise ValueError(f"array {arr.shape} is not on the reoriented grid of this volume")
    return _apply(arr, back), source_affine


def from_source_order(array: np.ndarray, volume_or_metadata: Any) -> np.ndarray:
    """The inverse of :func:`to_source_order`: voxels in file order -> display order."""
    record = orientation_record(volume_or_metadata)
    arr = np.asarray(array)
    if not record:
        return arr
    forward = np.asarray(record["transform"], float)
    if _is_identity(forward):
        return arr
    if tuple(arr.shape[-3:]) != tuple(record["source_shape"]):
        raise ValueError(f"array {arr.shape} is not on the source grid {tuple(record['source_shape'])}")
    return _apply(arr, forward)


def layer_geometry(affine: np.ndarray, shape=None, exact: bool = False) -> dict[str, Any]:
    """napari ``scale``, ``translate`` and (only when oblique) ``affine`` for a voxel->RAS affine.

    napari draws world = R @ (scale * index + translate). R is the rotation left after
    reorientation: the identity for an axis-aligned volume, a few degrees for a tilted
    acquisition (BRAINIX). Of that tilt, only the turn within the slice plane is given to
    napari: napari cannot show a slice that is not flat in its world (it draws each
    acquired slice flat anyway), and its brush, eraser and fill would land on neighbouring
    slices across the image, by up to tilt x field of view (1-2 slices on BRAINIX). So each
    acquired slice sits flat at its true depth, turned as acquired, exact at the volume's
    centre (``shape``; voxel 0 without it) and within the tilt elsewhere; series of one
    acquisition share the tilt and overlay exactly. ``Volume.affine``, the exports and the
    grid checks keep the exact geometry. ``exact=True`` gives napari the whole rotation.
    """
    m = WORLD_FROM_RAS @ np.asarray(affine, float)
    linear = m[:3, :3]
    scale = np.linalg.norm(linear, axis=0)
    if not np.all(scale > 0) or not np.all(np.isfinite(m)):
        return {"scale": (1.0, 1.0, 1.0), "translate": (0.0, 0.0, 0.0)}
    residual = linear / scale
    if not exact:
        # The nearest rotation within the (y, x) plane (polar decomposition of that block).
        u, _, vt = np.linalg.svd(residual[1:, 1:])
        in_plane = u @ vt
        if np.linalg.det(in_plane) < 0:  # a mirror is never a tilt: keep it out
            in_plane = np.eye(2)
        residual = np.eye(3)
        residual[1:, 1:] = in_plane
    centre = (np.asarray(shape, float)[-3:] - 1.0) / 2.0 if shape is not None else np.zeros(3)
    anchor = m[:3, :3] @ centre + m[:3, 3]  # exact world position of the anchor voxel
    translate = residual.T @ anchor - scale * centre
    out: dict[str, Any] = {
        "scale": tuple(float(v) for v in scale),
        "translate": tuple(float(v) for v in translate),
    }
    if not np.allclose(residual, np.eye(3), atol=1e-6):
        rot = np.eye(4)
        rot[:3, :3] = residual
        out["affine"] = rot
    return out


def displayed_world_affine(affine: np.ndarray, shape=None) -> np.ndarray:
    """4x4 index (z, y, x) -> napari world, as :func:`layer_geometry` places the layer."""
    geo = layer_geometry(affine, shape)
    rot = geo.get("affine", np.eye(4))[:3, :3]
    out = np.eye(4)
    out[:3, :3] = rot @ np.diag(geo["scale"])
    out[:3, 3] = rot @ np.asarray(geo["translate"])
    return out


def world_from_index(affine: np.ndarray, index) -> np.ndarray:
    """napari world coordinate (I, P, L mm) of a voxel index (z, y, x)."""
    return (WORLD_FROM_RAS @ np.asarray(affine, float) @ np.array([*index, 1.0]))[:3]


_POSITIVE = ("R", "A", "S")
_NEGATIVE = ("L", "P", "I")


def _direction_letter(ras_vector: np.ndarray) -> str:
    """The anatomical direction a vector mostly points to (its dominant RAS component)."""
    v = np.asarray(ras_vector, float)[:3]
    k = int(np.argmax(np.abs(v)))
    return _POSITIVE[k] if v[k] > 0 else _NEGATIVE[k]


def canvas_letters(
    displayed: tuple[int, int],
    world_to_ras: np.ndarray = WORLD_FROM_RAS,
    orientation2d: tuple[str, str] = ("down", "right"),
) -> dict[str, str]:
    """Letters for the four canvas edges of a 2D view: {"top", "bottom", "left", "right"}.

    ``displayed``: the (vertical, horizontal) spatial world axes on screen (napari's
    ``dims.displayed`` less any leading non-spatial axes), each 0, 1 or 2 of the (w0, w1,
    w2) world frame. ``world_to_ras`` maps that world frame to RAS (the package's frame is
    fixed: :data:`WORLD_FROM_RAS`, its own inverse; for a layer, ``Volume.affine @
    inverse(layer data-to-world)``). ``orientation2d``: napari's camera orientation, where
    the increasing coordinate points on screen ("down"/"up", "right"/"left").
    """
    m = np.asarray(world_to_ras, float)
    vertical, horizontal = (int(a) for a in displayed)
    down = _direction_letter(m[:3, vertical])
    right = _direction_letter(m[:3, horizontal])
    opposite = dict(zip(_POSITIVE + _NEGATIVE, _NEGATIVE + _POSITIVE))
    if orientation2d[0] == "up":
        down = opposite[down]
    if orientation2d[1] == "left":
        right = opposite[right]
    return {"top": opposite[down], "bottom": down, "left": opposite[right], "right": right}
