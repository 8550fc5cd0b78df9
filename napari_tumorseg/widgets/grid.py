"""Layers on one grid, in the viewer: the same check as ``tumorseg evaluate``, and the fix.

Where a layer sits is napari's data-to-world map, which the readers set from the file's
header (io.orientation). So whether two layers share a grid is asked of that map, through
the core :func:`napari_tumorseg.io.grid.check_same_grid`: the Correct dock's Dice and the
CLI's agree on what "the same grid" means, and a layer the user made in napari (no header
at all) is judged by where it is drawn.

A mask whose header disagrees with its scan (same shape, 120 mm away) is shown where its
header says, and :func:`install_grid_watch` says so the moment it is opened, with a
button "Use the image's grid" (:func:`use_image_grid`).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from napari_tumorseg.io.grid import DEFAULT_TOL_MM, check_same_grid
from napari_tumorseg.io.orientation import WORLD_FROM_RAS, displayed_world_affine
from napari_tumorseg.io.volume import Volume
from napari_tumorseg.per_viewer import PerViewer

_WATCHED: "PerViewer[bool]" = PerViewer()


def _spatial_shape(layer) -> tuple[int, ...]:
    shape = tuple(int(s) for s in np.shape(layer.data))
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return ((1,) + shape)[-3:] if len(shape) == 2 else shape[-3:]


def layer_world_affine(layer) -> np.ndarray:
    """4x4 map from the layer's spatial index (z, y, x) to napari world (I, P, L mm),
    read from napari's own data-to-world transform (so it is where the layer is drawn)."""
    ndim = layer.ndim
    lead = max(ndim - 3, 0)

    def world(idx3) -> np.ndarray:
        idx = [0.0] * lead + list(idx3)[-min(ndim, 3):]
        w = np.asarray(layer.data_to_world(idx), dtype=float)
        return w[-3:] if w.size >= 3 else np.concatenate([[0.0], w[-2:]])

    if ndim == 2:
        origin = world((0, 0, 0))
        cols = [np.array([1.0, 0.0, 0.0]), world((0, 1, 0)) - origin, world((0, 0, 1)) - origin]
    else:
        origin = world((0, 0, 0))
        cols = [world(e) - origin for e in np.eye(3)]
    a = np.eye(4)
    a[:3, :3] = np.stack(cols, axis=1)
    a[:3, 3] = origin
    return a


def _header_affine(layer) -> np.ndarray | None:
    """The exact voxel -> RAS affine the reader stored, if the layer still sits where that
    affine puts it (napari draws an oblique slice stack flat: io.orientation.layer_geometry)."""
    stored = ((layer.metadata or {}).get("tumorseg") or {}).get("affine")
    if stored is None or layer.ndim < 3:
        return None
    affine = np.asarray(stored, dtype=float)
    if affine.shape != (4, 4):
        return None
    expected = displayed_world_affine(affine, _spatial_shape(layer))
    return affine if np.allclose(layer_world_affine(layer), expected, atol=1e-3) else None


def layer_grid_volume(layer) -> Volume:
    """A data-less stand-in Volume with the layer's shape and its geometry: the header's,
    exact, while the layer sits where the header puts it; else where it is drawn."""
    header = _header_affine(layer)
    ras = header if header is not None else WORLD_FROM_RAS @ layer_world_affine(layer)
    spacing = tuple(float(v) for v in np.linalg.norm(ras[:3, :3], axis=0))
    shape = _spatial_shape(layer)
    return Volume(np.broadcast_to(np.zeros((), np.uint8), shape), spacing, ras, name=layer.name,
                  metadata={"stored_geometry": True})


def layers_grid_reason(a, b, tol_mm: float = DEFAULT_TOL_MM) -> str:
    """Why layers ``a`` and ``b`` are not on one grid ("" when they are): core check_same_grid."""
    return check_same_grid(layer_grid_volume(a), layer_grid_volume(b), tol_mm)


def geometry_kwargs(layer) -> dict[str, Any]:
    """``scale``, ``translate`` and ``affine`` for a new layer on ``layer``'s grid (3D)."""
    n = layer.ndim
    scale = tuple(float(s) for s in layer.scale)[-3:]
    translate = tuple(float(t) for t in layer.translate)[-3:]
    if n == 2:
        scale, translate = (1.0, *scale), (0.0, *translate)
    affine = np.asarray(layer.affine.affine_matrix, dtype=float)
    a3 = np.eye(4)
    k = min(n, 3)
    a3[3 - k:3, 3 - k:3] = affine[n - k:n, n - k:n]
    a3[3 - k:3, 3] = affine[n - k:n, n]
    return {"scale": scale, "translate": translate, "affine": a3}


def adopt_image_grid(viewer, labels_layer, image_layer):
    """"Use the image's grid": a NEW labels layer with ``labels_layer``'s voxels on
    ``image_layer``'s grid; the original is hidden, never changed. Undo = delete the new
    layer and show the old one: the user's voxels and their placement both survive."""
    new = viewer.add_labels(np.array(labels_layer.data, copy=True), name=f"{labels_layer.name} (on image grid)",
                            opacity=labels_layer.opacity, metadata=dict(labels_layer.metadata or {}))
    for key in ("contour", "colormap"):
        try:
            setattr(new, key, getattr(labels_layer, key))
        except Exception:  # noqa: BLE001 - display settings only; the voxels are what matters
            pass
    use_image_grid(new, image_layer)
    labels_layer.visible = False
    return new


def use_image_grid(labels_layer, image_layer) -> None:
    """Put ``labels_layer`` on ``image_layer``'s grid: same placement on screen, and the
    image's geometry and source references in its metadata so exports follow."""
    if _spatial_shape(labels_layer) != _spatial_shape(image_layer):
        raise ValueError("the two layers do not have the same size")
    geo = geometry_kwargs(image_layer)
    n = labels_layer.ndim
    lead = n - 3
    labels_layer.scale = (*tuple(labels_layer.scale)[:lead], *geo["scale"][-n:])
    labels_layer.translate = (*tuple(labels_layer.translate)[:lead], *geo["translate"][-n:])
    full = np.eye(n + 1)
    full[lead:n, lead:n] = geo["affine"][3 - min(n, 3):3, 3 - min(n, 3):3]
    labels_layer.affine = full
    meta = dict(labels_layer.metadata or {})
    image_meta = image_layer.metadata or {}
    for key in ("tumorseg", "orientation", "dicom"):
        if key in image_meta:
            meta[key] = image_meta[key]
        else:
            meta.pop(key, None)
    labels_layer.metadata = meta


def _mismatch_message(labels_layer, image_layer, reason: str) -> str:
    return (f"'{labels_layer.name}' has the size of '{image_layer.name}' but not its grid: "
            f"{reason}. It is shown where its header puts it.")


def check_new_labels(viewer, labels_layer) -> str:
    """Warn (one notification, with the fix as a button) when ``labels_layer`` has the size
    of an image in ``viewer`` but another grid. Returns the reason ("" when all is well)."""
    from napari.utils.notifications import Notification, notification_manager

    shape = _spatial_shape(labels_layer)
    for layer in viewer.layers:
        if layer is labels_layer or layer.__class__.__name__ != "Image":
            continue
        if _spatial_shape(layer) != shape:
            continue
        reason = layers_grid_reason(labels_layer, layer)
        if not reason:
            return ""  # it sits on an image of its size: nothing to say
        image_ref, labels_ref, viewer_ref = weakref.ref(layer), weakref.ref(labels_layer), weakref.ref(viewer)

        def adopt(*_args) -> None:
            image, labels, v = image_ref(), labels_ref(), viewer_ref()
            if image is not None and labels is not None and v is not None and labels in v.layers:
                adopt_image_grid(v, labels, image)

        notification_manager.dispatch(Notification(
            _mismatch_message(labels_layer, layer, reason), severity="warning",
            actions=[("Use the image's grid", adopt)],
        ))
        return reason
    return ""


def install_grid_watch(viewer) -> None:
    """Check every labels layer added to ``viewer`` against the images (once per viewer)."""
    if _WATCHED.get(viewer):
        return
    _WATCHED.set(viewer, True)

    def on_inserted(event) -> None:
        layer = event.value
        if layer.__class__.__name__ == "Labels":
            check_new_labels(viewer, layer)

    viewer.layers.events.inserted.connect(on_inserted)
