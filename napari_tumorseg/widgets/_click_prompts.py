"""The prompts of one scan as napari layers on its grid: clicks, a box and scribbles.

The layers are the truth: napari's own tools may delete or move a click, erase a scribble
or delete the box, and :meth:`PromptLayers.prompts` reads whatever is on screen. The box and
scribbles are drawn through :meth:`PromptLayers.set_box` / :meth:`PromptLayers.paint_scribble`
by the dock's drag handler rather than by napari's shape and brush tools, so the user never
switches napari modes, and every stroke lands on the slice on screen whatever the layer's
transform (see :func:`clicked_voxel`).
"""

from __future__ import annotations

from typing import Callable

import napari
import numpy as np
import pandas as pd

from napari_tumorseg.interactive.prompts import Prompts

POSITIVE_COLOR = (0.1, 0.95, 0.2, 1.0)
NEGATIVE_COLOR = (1.0, 0.15, 0.15, 1.0)
SCRIBBLE_TUMOUR, SCRIBBLE_NOT = 1, 2
# The dock's own layers carry this metadata key, so its pickers never offer them.
ROLE_KEY = "tumorseg_click_role"
_KINDS = ("click", "box", "scribble")


def grid_kwargs(scan) -> dict:
    """Geometry that puts a layer's data coordinates on the scan's voxel grid."""
    return {"scale": tuple(scan.scale), "translate": tuple(scan.translate), "rotate": scan.rotate,
            "shear": scan.shear, "affine": scan.affine.affine_matrix}


def on_scan_grid(scan, role: str) -> dict:
    """Layer keywords for one of the dock's layers: the scan's geometry and header metadata
    (so the grid check reads the same header), marked with its role."""
    meta = dict(scan.metadata) if isinstance(scan.metadata, dict) else {}
    meta.pop("tumorseg_output", None)
    return {**grid_kwargs(scan), "metadata": {**meta, ROLE_KEY: role}}


def spatial_shape(layer) -> tuple[int, ...]:
    """A layer's spatial shape as napari shows it (an RGB layer loses its colour axis)."""
    shape = tuple(np.shape(layer.data))
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def as_volume(mask: np.ndarray, ndim: int) -> np.ndarray:
    """A 2D layer's array as a one-slice volume (the engines' grid)."""
    return mask[None] if ndim == 2 else mask


def from_volume(mask: np.ndarray, ndim: int) -> np.ndarray:
    return mask[0] if ndim == 2 else mask


def _to_zyx(coords, ndim: int) -> np.ndarray:
    """Layer data coordinates (n, ndim) -> (n, 3) (z, y, x); a 2D image is one slice."""
    arr = np.asarray(coords, float).reshape(-1, ndim)
    if ndim == 2:
        return np.column_stack([np.zeros(len(arr)), arr])
    return arr[:, -3:]


def clicked_voxel(layer, world, dims) -> np.ndarray:
    """Data coordinates of a 2D-view click on ``layer``, as napari draws it.

    napari draws a layer whose transform tilts the slice plane (an affine with an
    out-of-plane rotation) flat, dropping that rotation, so there the exact
    ``layer.world_to_data`` of a click can lie a slice or more away from the slice on screen.
    What the user pointed at is the displayed slice, at the in-plane position of napari's own
    2D transform; for an axis-aligned layer both agree.
    """
    world = np.asarray(world, float)[-layer.ndim:]
    point = np.asarray(layer.world_to_data(world), float)  # exact for axis-aligned layers
    offset = dims.ndim - layer.ndim
    displayed = [d - offset for d in dims.displayed if d >= offset]
    hidden = [d for d in range(layer.ndim) if d not in displayed]
    to_world = data_to_world(layer)
    point[displayed] = to_world.set_slice(displayed).inverse(world[displayed])
    if hidden:
        # The slice on screen, found as napari's slicing finds it: the world position of the
        # hidden axes through the inverse transform restricted to them.
        shown = np.asarray(dims.point, float)[-layer.ndim:]
        point[hidden] = np.round(to_world.inverse.set_slice(hidden)(shown[hidden]))
    return point


def data_to_world(layer):
    """The layer's data -> world transform from its public properties: the affine after
    scale, translate, rotate and shear (napari's own order)."""
    from napari.utils.transforms import Affine

    physical = Affine(scale=layer.scale, translate=layer.translate, rotate=layer.rotate,
                      shear=layer.shear, ndim=layer.ndim)
    return Affine(affine_matrix=np.asarray(layer.affine.affine_matrix) @ physical.affine_matrix,
                  ndim=layer.ndim)


def _plane(plane, layer) -> tuple[int, int]:
    """The two data axes on screen (default: the last two)."""
    n = len(spatial_shape(layer))
    return (n - 2, n - 1) if plane is None else (int(plane[0]), int(plane[1]))


def _index(point, plane, yx, ndim: int) -> tuple:
    """Index arrays for the in-plane voxels ``yx`` (rows along ``plane[0]``) on ``point``'s slice."""
    out = []
    for a in range(ndim):
        if a == plane[0]:
            out.append(yx[:, 0])
        elif a == plane[1]:
            out.append(yx[:, 1])
        else:
            out.append(np.full(len(yx), int(np.round(point[a]))))
    return tuple(out)


def displayed_plane(layer, dims) -> tuple[int, int] | None:
    """The layer's two data axes on screen in a 2D view, or None (3D view)."""
    if dims.ndisplay != 2:
        return None
    offset = dims.ndim - layer.ndim
    axes = [d - offset for d in dims.displayed if d >= offset]
    n = len(spatial_shape(layer))
    axes = [a for a in axes if a < n]
    return (axes[0], axes[1]) if len(axes) == 2 else None


def _last_index(items: list, value) -> int:
    return len(items) - 1 - items[::-1].index(value)


class PromptLayers:
    """Clicks (Points), a box (Shapes) and scribbles (Labels, 1 = tumour, 2 = not) on one scan.

    ``changed`` is called after every prompt change; ``undo`` is bound to Ctrl+Z on each layer.
    """

    def __init__(self, viewer, scan, changed: Callable[[], None], undo: Callable[[], None]):
        self.viewer = viewer
        self.scan = scan
        self._changed = changed
        self._undo_key = undo
        self.clicks = self.box = self.scribbles = None
        self.history: list[str] = []  # "click" | "box" | "scribble", newest last
        self._stroking = False

    @property
    def ndim(self) -> int:
        return len(spatial_shape(self.scan))

    # -- the layers ---------------------------------------------------------------------
    def _add(self, layer):
        """Add a prompt layer without taking the selection from the user's layer."""
        active = self.viewer.layers.selection.active
        self.viewer.add_layer(layer)
        layer.bind_key("Control-Z", lambda _layer: self._undo_key(), overwrite=True)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return layer

    def _alive(self, layer) -> bool:
        return layer is not None and layer in self.viewer.layers

    def ensure_clicks(self):
        if not self._alive(self.clicks):
            scan, ndim = self.scan, self.ndim
            self.clicks = self._add(napari.layers.Points(
                np.zeros((0, ndim)), ndim=ndim, name=f"{scan.name} clicks",
                features=pd.DataFrame({"positive": pd.Series([], dtype=bool)}),
                face_color="positive", face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
                border_color="white", border_width=0.1, size=7, **on_scan_grid(scan, "clicks")))
            self.clicks.events.data.connect(self._clicks_changed)
        return self.clicks

    def ensure_box(self):
        if not self._alive(self.box):
            self.box = self._add(napari.layers.Shapes(
                ndim=self.ndim, name=f"{self.scan.name} box", edge_color="yellow", face_color="transparent",
                edge_width=1.5, **on_scan_grid(self.scan, "box")))
            self.box.events.data.connect(self._box_changed)
        return self.box

    def ensure_scribbles(self):
        from napari.utils.colormaps import DirectLabelColormap

        if not self._alive(self.scribbles):
            colors = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0), SCRIBBLE_TUMOUR: POSITIVE_COLOR,
                      SCRIBBLE_NOT: NEGATIVE_COLOR}
            self.scribbles = self._add(napari.layers.Labels(
                np.zeros(spatial_shape(self.scan), np.uint8), name=f"{self.scan.name} scribbles", opacity=0.8,
                colormap=DirectLabelColormap(color_dict=colors), **on_scan_grid(self.scan, "scribbles")))
            # napari's own brush on this layer (the user's choice) still counts as a scribble.
            self.scribbles.events.paint.connect(self._scribbles_changed)
        return self.scribbles

    def forget(self, layer) -> bool:
        """``layer`` was removed from the viewer; True when it held prompts."""
        for attr, kind in (("clicks", "click"), ("box", "box"), ("scribbles", "scribble")):
            if getattr(self, attr) is layer:
                setattr(self, attr, None)
                self.history = [h for h in self.history if h != kind]
                return True
        return False

    def remove(self) -> None:
        """Take the prompt layers out of the viewer (the scan changed or went)."""
        layers = (self.clicks, self.box, self.scribbles)
        self.clicks = self.box = self.scribbles = None
        self.history.clear()
        for layer in layers:
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    # -- adding prompts -----------------------------------------------------------------
    def inside(self, point) -> bool:
        shape = spatial_shape(self.scan)
        pt = np.asarray(point, float)[-len(shape):]
        return all(-0.5 <= p < s - 0.5 for p, s in zip(pt, shape))

    def add_click(self, point, positive: bool) -> None:
        layer = self.ensure_clicks()
        pt = np.asarray(point, float)[-self.ndim:]
        layer.selected_data = set()
        layer.feature_defaults = {"positive": bool(positive)}
        self.history.append("click")
        layer.data = np.vstack([layer.data, pt[None]])  # the data event reports the change

    def set_box(self, corner0, corner1, plane=None) -> None:
        """The (only) box: a rectangle in ``plane`` (the two data axes on screen; default the
        last two) on the slice of ``corner0`` (data coordinates), no event."""
        layer = self.ensure_box()
        a, b = np.asarray(corner0, float), np.asarray(corner1, float)
        r, c = _plane(plane, layer)
        verts = []
        for u, v in ((a[r], a[c]), (a[r], b[c]), (b[r], b[c]), (b[r], a[c])):
            corner = a.copy()
            corner[r], corner[c] = u, v
            verts.append(corner)
        verts = np.array(verts)
        with layer.events.data.blocker():
            if layer.nshapes:
                layer.selected_data = set(range(layer.nshapes))
                layer.remove_selected()
            layer.add_rectangles(verts)
        layer.refresh()

    def box_done(self) -> None:
        """A box drawn by :meth:`set_box` is final: it becomes the newest prompt."""
        self.history = [h for h in self.history if h != "box"] + ["box"]
        self._changed()

    def paint_scribble(self, points, positive: bool, plane=None) -> None:
        """One stroke through ``points`` (data coordinates, one slice): one undo step.

        ``plane`` is the pair of data axes on screen (default: the last two, an axial view);
        the stroke lies on the first point's slice along the others."""
        layer = self.ensure_scribbles()
        points = [np.asarray(p, float) for p in points]
        value = SCRIBBLE_TUMOUR if positive else SCRIBBLE_NOT
        plane = _plane(plane, layer)
        self._stroking = True  # the paint event that closes the stroke is ours
        try:
            with layer.block_history():
                for p0, p1 in zip(points[:1] + points[:-1], points):
                    self._stamp(layer, p0, p1, value, plane)
        finally:
            self._stroking = False
        self.history.append("scribble")
        self._changed()

    def paint_lasso(self, points, positive: bool, plane=None) -> bool:
        """The closed polygon through ``points`` (data coordinates, one slice), filled with its
        outline, as one scribble (tumour or not): one undo step. False when it encloses nothing."""
        from skimage.draw import polygon, polygon_perimeter

        layer = self.ensure_scribbles()
        plane = _plane(plane, layer)
        pts = np.asarray([np.asarray(p, float) for p in points])
        shape = spatial_shape(layer)
        sub = (shape[plane[0]], shape[plane[1]])
        rows, cols = pts[:, plane[0]], pts[:, plane[1]]
        rr, cc = polygon(rows, cols, shape=sub)
        if len(rr) == 0:
            return False
        pr, pc = polygon_perimeter(np.round(rows), np.round(cols), shape=sub, clip=False)
        keep = (pr >= 0) & (pr < sub[0]) & (pc >= 0) & (pc < sub[1])
        yx = np.unique(np.column_stack([np.concatenate([rr, pr[keep]]), np.concatenate([cc, pc[keep]])]), axis=0)
        self._stroking = True
        try:
            with layer.block_history():
                layer.data_setitem(_index(pts[0], plane, yx, len(shape)),
                                   SCRIBBLE_TUMOUR if positive else SCRIBBLE_NOT)
        finally:
            self._stroking = False
        self.history.append("scribble")
        self._changed()
        return True

    @staticmethod
    def _stamp(layer, p0, p1, value, plane=None) -> None:
        """A disk brush of ~2 mm radius along the segment p0 -> p1 on p0's slice (in ``plane``)."""
        shape = spatial_shape(layer)
        plane = _plane(plane, layer)
        ax = list(plane)
        r = np.maximum(1.0, 2.0 / np.abs(np.asarray(layer.scale, float))[ax])
        n = int(np.ceil(np.abs(p1[ax] - p0[ax]).max() * 2)) + 1
        centres = np.round(np.linspace(p0[ax], p1[ax], n))
        ry, rx = int(np.ceil(r[0])), int(np.ceil(r[1]))
        dy, dx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        disk = (dy / r[0]) ** 2 + (dx / r[1]) ** 2 <= 1.0
        yx = (centres[:, None, :] + np.stack([dy[disk], dx[disk]], axis=1)[None]).reshape(-1, 2)
        yx = np.unique(yx.astype(int), axis=0)
        yx = yx[(yx[:, 0] >= 0) & (yx[:, 0] < shape[ax[0]]) & (yx[:, 1] >= 0) & (yx[:, 1] < shape[ax[1]])]
        if len(yx):
            layer.data_setitem(_index(p0, plane, yx, len(shape)), value)

    # -- napari's own edits -------------------------------------------------------------
    @staticmethod
    def _settled(event) -> bool:
        """Only the 'added/removed/changed' half of napari's paired data events."""
        action = getattr(event, "action", None)
        return action is None or str(action).split(".")[-1].lower() in ("added", "removed", "changed")

    def _sync(self, kind: str, n: int) -> None:
        """Keep ``n`` entries of ``kind`` in the history (napari's tools add or delete some)."""
        while self.history.count(kind) > n:
            del self.history[_last_index(self.history, kind)]
        self.history.extend([kind] * (n - self.history.count(kind)))

    def _clicks_changed(self, event=None) -> None:
        if self._settled(event):
            self._sync("click", 0 if self.clicks is None else len(self.clicks.data))
            self._changed()

    def _box_changed(self, event=None) -> None:
        if self._settled(event):
            self._sync("box", 0 if self.box is None else min(1, len(self.box.data)))
            self._changed()

    def _scribbles_changed(self, *_):
        if not self._stroking:
            self.history.append("scribble")
            self._changed()

    # -- reading, undoing, clearing -----------------------------------------------------
    def undo(self) -> bool:
        """Remove the newest prompt; False when there is none."""
        if not self.history:
            return False
        kind = self.history[-1]
        if kind == "click" and self.clicks is not None and len(self.clicks.data):
            self.clicks.data = self.clicks.data[:-1]  # the data event drops it from the history
        elif kind == "box" and self.box is not None and len(self.box.data):
            self.box.selected_data = {len(self.box.data) - 1}
            self.box.remove_selected()
        else:
            self.history.pop()
            if kind == "scribble" and self.scribbles is not None:
                self.scribbles.undo()
            self._changed()
        return True

    def prompts(self) -> Prompts:
        """The prompts on screen, in the scan's (z, y, x) voxel coordinates."""
        ndim = self.ndim
        pos = neg = np.zeros((0, 3))
        if self.clicks is not None and len(self.clicks.data):
            pts = _to_zyx(self.clicks.data, ndim)
            sign = self.clicks.features["positive"].to_numpy(bool)
            pos, neg = pts[sign], pts[~sign]
        box = None
        outside = None
        if self.box is not None and len(self.box.data):
            verts = _to_zyx(self.box.data[-1], ndim)
            lo, hi = verts.min(axis=0), verts.max(axis=0)
            flat = [a for a in range(3) if np.isclose(lo[a], hi[a])]
            if not flat or flat[0] == 0:  # an axial box (or a 2D image's)
                box = (float(np.round(verts[0, 0])), lo[1], lo[2], hi[1], hi[2])
            else:
                # A box on a coronal or sagittal slice, said as the engines understand a box:
                # tumour at its centre, not tumour around it on its slice.
                pos = np.vstack([pos, ((lo + hi) / 2)[None]])
                outside = self._around_box(flat[0], lo, hi)
        scribbles = None
        if self.scribbles is not None:
            data = np.asarray(self.scribbles.data)
            if data.any():
                scribbles = as_volume(data, ndim)
        if outside is not None:
            scribbles = np.zeros(outside.shape, np.uint8) if scribbles is None else scribbles.copy()
            scribbles[outside & (scribbles == 0)] = SCRIBBLE_NOT
        return Prompts(pos, neg, box, scribbles)

    def _around_box(self, axis: int, lo, hi) -> np.ndarray:
        """The slice of a box lying across ``axis``, less the box (bool, the scan's grid)."""
        shape = as_volume(np.empty(spatial_shape(self.scan), bool), self.ndim).shape
        out = np.zeros(shape, bool)
        k = int(np.clip(np.round(lo[axis]), 0, shape[axis] - 1))
        sl = [slice(None)] * 3
        sl[axis] = k
        out[tuple(sl)] = True
        inner = [slice(None)] * 3
        inner[axis] = k
        for a in range(3):
            if a != axis:
                inner[a] = slice(int(np.clip(np.round(lo[a]), 0, shape[a])), int(np.clip(np.round(hi[a]) + 1, 0, shape[a])))
        out[tuple(inner)] = False
        return out

    def any(self) -> bool:
        """Anything said at all, negative clicks included (they refine a prediction)."""
        p = self.prompts()
        return not p.empty or len(p.negative) > 0 or p.scribbles is not None

    def clear(self) -> None:
        """Empty every prompt layer (they stay, for the next lesion); no change event."""
        self.history.clear()
        if self.clicks is not None:
            with self.clicks.events.data.blocker():
                self.clicks.data = np.zeros((0, self.clicks.ndim))
            self.clicks.refresh()
        if self.box is not None and len(self.box.data):
            with self.box.events.data.blocker():
                self.box.data = []
            self.box.refresh()
        if self.scribbles is not None:
            self.scribbles.data = np.zeros_like(self.scribbles.data)
