"""Dock widget: segment a tumour from clicks, a box or scribbles; preview it; accept it.

A thin driver of :mod:`napari_tumorseg.interactive`. The prompts live in three napari
layers on the scan's grid (clicks, a box, scribbles), so napari's own tools can edit them
and the dock reads them back; every change re-segments on a worker thread. One job runs at
a time (the engines are not re-entrant, and the CPU has two cores): a newer prompt bumps a
generation counter that the running job's ``cancel`` polls, and the latest prompts run as
soon as it stops, so only the latest result lands. The result is a preview layer; Accept
writes it into the target labels as one undo step (:func:`correct.apply_edit`).
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
import numpy as np
import pandas as pd
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.interactive.prompts import Prompts
from napari_tumorseg.widgets._common import notify_error, set_choices, show_info
from napari_tumorseg.widgets._session import session_for
from napari_tumorseg.widgets.correct import apply_edit

HINT = "Click on the tumour; Ctrl+click what is not tumour; Accept to keep"
NEW_LAYER = "new labels layer"
AUTO = "automatic (best available)"
CLASSIC = "classic (no model)"
CLASSIC_TEXT = "classic: seeded 3D region (no model)"
POSITIVE_COLOR = (0.1, 0.95, 0.2, 1.0)
NEGATIVE_COLOR = (1.0, 0.15, 0.15, 1.0)
PREVIEW_COLOR = (1.0, 0.85, 0.0, 1.0)
SCRIBBLE_TUMOUR, SCRIBBLE_NOT = 1, 2
# A press that moves more than this many screen pixels is a pan, not a click.
_CLICK_SLOP_PX = 4
# Our own layers are marked so the scan/target pickers never offer them.
_ROLE_KEY = "tumorseg_click_role"


def _grid_kwargs(scan) -> dict:
    """Geometry that puts a layer's data coordinates on the scan's voxel grid."""
    return {"scale": tuple(scan.scale), "translate": tuple(scan.translate), "rotate": scan.rotate,
            "shear": scan.shear, "affine": scan.affine.affine_matrix}


def _spatial_shape(scan) -> tuple[int, ...]:
    """The scan's spatial shape as napari shows it (an RGB layer loses its colour axis)."""
    shape = tuple(np.shape(scan.data))
    return shape[:-1] if getattr(scan, "rgb", False) else shape


def _to_zyx(coords, ndim: int) -> np.ndarray:
    """Layer data coordinates (n, ndim) -> (n, 3) (z, y, x); a 2D image is one slice."""
    arr = np.asarray(coords, float).reshape(-1, ndim)
    if ndim == 2:
        return np.column_stack([np.zeros(len(arr)), arr])
    return arr[:, -3:]


def _as_volume(mask: np.ndarray, ndim: int) -> np.ndarray:
    return mask[None] if ndim == 2 else mask


def _from_volume(mask: np.ndarray, ndim: int) -> np.ndarray:
    return mask[0] if ndim == 2 else mask


def clicked_voxel(layer, world, dims) -> np.ndarray:
    """Data coordinates of a 2D-view click on ``layer``, as napari draws it.

    napari shows the data slices of an oblique scan (BRAINIX is tilted by 4 degrees) flat,
    dropping the out-of-plane rotation, so the exact ``layer.world_to_data`` of a click can
    lie a slice or two away from the slice on screen. What the user pointed at is the
    displayed slice, at the in-plane position of napari's own 2D transform.
    """
    world = np.asarray(world, float)[-layer.ndim:]
    point = np.asarray(layer.world_to_data(world), float)  # exact for axis-aligned layers
    offset = dims.ndim - layer.ndim
    displayed = [d - offset for d in dims.displayed if d >= offset]
    hidden = [d for d in range(layer.ndim) if d not in displayed]
    try:
        plane = layer._data_to_world.set_slice(displayed)
        on_screen = np.asarray(layer._data_slice.point, float)
    except AttributeError:  # napari moved its slicing internals: keep the exact 3D point
        return point
    point[displayed] = plane.inverse(world[displayed])
    point[hidden] = np.round(on_screen[hidden])
    return point


def _label_names(layer) -> dict[int, str]:
    names = layer.metadata.get("label_names") if layer is not None and isinstance(layer.metadata, dict) else None
    if not isinstance(names, dict):
        return {}
    out = {}
    for k, v in names.items():
        try:
            out[int(k)] = str(v)
        except (TypeError, ValueError):
            continue
    return out


def _segment_job(engine, image, spacing, prompts, prior, cancel):
    """Worker-thread body: the engine's answer and the seconds it took."""
    t0 = time.perf_counter()
    if prior is not None:
        from napari_tumorseg.interactive.refine import refine_with_prompts

        mask = refine_with_prompts(prior, image, spacing, prompts, engine, cancel=cancel)
    else:
        mask = engine.segment(image, spacing, prompts, prior=None, cancel=cancel)
    return np.asarray(mask, bool), time.perf_counter() - t0


def describe_engine(engine) -> str:
    """One line saying what answers the clicks."""
    from napari_tumorseg.interactive.classic import ClassicEngine

    if isinstance(engine, ClassicEngine):
        return CLASSIC_TEXT
    dims = getattr(engine, "dims", None)
    if dims is None:
        return str(engine.name)
    return f"{engine.name} ({'3D crop' if dims == 3 else '2D+propagation'})"


def _best_engine():
    """Worker-thread body: the automatic choice (it may load the starter model)."""
    from napari_tumorseg.interactive.engines import default_engine

    return default_engine()


class SegmentClicksWidget(QWidget):
    #: emitted on the GUI thread when a segmentation lands in the preview (or the preview clears)
    preview_updated = Signal()
    #: emitted when the automatic engine is known (loaded in the background)
    engine_ready = Signal()

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.preview_mask: np.ndarray | None = None  # (z, y, x) bool on the scan grid
        self.last_seconds: float | None = None
        self.jobs_started = 0
        self._scan = None  # the scan the prompt layers belong to
        self._clicks = self._box = self._scribbles = self._preview = None
        self._history: list[str] = []  # "click" | "box" | "scribble", newest last
        self._generation = 0
        self._worker = None
        self._pending = False
        self._engines: dict[str, tuple[object, str]] = {}  # combo text -> (engine, description)
        self._auto: tuple[object, str] | None = None
        self._auto_worker = None
        self._stroking = False
        self._switching = False

        # -- what to segment, where to put it -------------------------------------------
        hint = QLabel(HINT)
        hint.setWordWrap(True)
        hint.setStyleSheet("font-weight: bold;")
        self.scan_combo = QComboBox()
        self.scan_combo.setToolTip("the scan to segment; a multi-channel case uses all its channels")
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("the labels layer Accept writes into")
        self.value_spin = QSpinBox()
        self.value_spin.setRange(1, 255)
        self.value_spin.setToolTip("the label value Accept writes (one value per lesion or region)")
        self.value_name = QLabel("")
        self.engine_combo = QComboBox()
        self.engine_combo.addItems([AUTO, CLASSIC])
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("load a click-guided checkpoint (tumorseg train --interactive)")
        self.load_button.clicked.connect(self._pick_checkpoint)
        self.engine_status = QLabel("")
        self.engine_status.setWordWrap(True)

        # -- prompts ----------------------------------------------------------------------
        self.positive_radio = QRadioButton("Tumour")
        self.negative_radio = QRadioButton("Not tumour")
        self.positive_radio.setChecked(True)
        self.positive_radio.setToolTip("a plain click marks tumour; Ctrl/Shift+click inverts this choice")
        group = QButtonGroup(self)
        group.addButton(self.positive_radio)
        group.addButton(self.negative_radio)
        self.box_button = QPushButton("Box")
        self.box_button.setToolTip("on: drag a rectangle around the tumour on the slice shown")
        self.box_button.setCheckable(True)
        self.box_button.toggled.connect(self._draw_mode_toggled)
        self.scribble_button = QPushButton("Scribble")
        self.scribble_button.setToolTip("on: drag to paint over tumour (Ctrl or 'Not tumour': over what is not)")
        self.scribble_button.setCheckable(True)
        self.scribble_button.toggled.connect(self._draw_mode_toggled)
        self.undo_button = QPushButton("Undo prompt")
        self.undo_button.setToolTip("remove the last click, box or scribble (Ctrl+Z on the clicks layer)")
        self.undo_button.clicked.connect(self.undo_prompt)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("drop every prompt and the preview")
        self.clear_button.clicked.connect(self.clear)
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("write the preview into the target labels (one undo step)")
        self.accept_button.clicked.connect(self.accept)
        self.result_label = QLabel("no preview")
        self.result_label.setWordWrap(True)

        inner = QWidget()
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Scan", self.scan_combo)
        form.addRow("Into", self.target_combo)
        row = QHBoxLayout()
        row.addWidget(self.value_spin)
        row.addWidget(self.value_name, 1)
        form.addRow("Value", row)
        row = QHBoxLayout()
        row.addWidget(self.engine_combo, 1)
        row.addWidget(self.load_button)
        form.addRow("Engine", row)
        form.addRow(self.engine_status)
        row = QHBoxLayout()
        row.addWidget(self.positive_radio)
        row.addWidget(self.negative_radio)
        row.addStretch(1)
        row.addWidget(self.box_button)
        row.addWidget(self.scribble_button)
        form.addRow("Click", row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.undo_button)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.accept_button)
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(hint)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.result_label)
        lay.addStretch(1)
        # Compact on a 1366x768 screen beside other docks: scroll rather than grow.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        for combo in (self.scan_combo, self.target_combo, self.engine_combo):
            # Long layer names must not widen the dock past a small screen.
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self._resegment_timer = QTimer(self)
        self._resegment_timer.setSingleShot(True)
        self._resegment_timer.timeout.connect(self.resegment)

        self.scan_combo.currentTextChanged.connect(self._scan_changed)
        self.target_combo.currentTextChanged.connect(self._target_changed)
        self.value_spin.valueChanged.connect(self._show_value_name)
        self.engine_combo.currentTextChanged.connect(self._engine_changed)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._layer_removed)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.session.events.prediction.connect(self._follow_prediction)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.viewer.layers.selection.events.active.connect(self._active_changed)
        self._refresh_layers()
        self._engine_changed(self.engine_combo.currentText())

    # ================================================================== layers
    def _is_ours(self, layer) -> bool:
        return isinstance(layer.metadata, dict) and _ROLE_KEY in layer.metadata

    def _scan_layers(self) -> list:
        return [l for l in self.session.image_layers() if not self._is_ours(l)]

    def _label_layers(self) -> list:
        return [l for l in self.viewer.layers if isinstance(l, napari.layers.Labels) and not self._is_ours(l)]

    def _refresh_layers(self, *_):
        set_choices(self.scan_combo, [l.name for l in self._scan_layers()])
        before = self.target_combo.currentText()
        set_choices(self.target_combo, [NEW_LAYER] + [l.name for l in self._label_layers()])
        if self.scan_combo.currentText() and self._scan is None:
            self._scan_changed(self.scan_combo.currentText())
        if self.target_combo.currentText() != before:
            self._target_changed(self.target_combo.currentText())

    def scan(self):
        name = self.scan_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise TumorSegError("open a scan to segment")
        return self.viewer.layers[name]

    def target(self):
        """The chosen labels layer, or None for 'new labels layer'."""
        name = self.target_combo.currentText()
        if name and name != NEW_LAYER and name in self.viewer.layers:
            return self.viewer.layers[name]
        return None

    def _scan_changed(self, name: str) -> None:
        layer = self.viewer.layers[name] if name and name in self.viewer.layers else None
        if layer is self._scan:
            return
        # The prompts were on the previous scan's grid: they do not carry over.
        self._drop_prompt_layers()
        self._scan = layer
        self._follow_prediction()

    def _target_changed(self, *_):
        self._show_value_name()
        if self._has_prompts():
            self._schedule()  # refining a prediction or not may have changed
        self._show_mode()

    def _show_value_name(self, *_):
        names = _label_names(self.target())
        self.value_name.setText(names.get(self.value_spin.value(), ""))

    def _follow_prediction(self, *_):
        """A prediction of this scan becomes the target: clicks then refine it."""
        p = self.session.prediction
        if (p is not None and p.labels_layer is not None and p.labels_layer in self.viewer.layers
                and p.source is self._scan):
            self._refresh_layers()
            self.target_combo.setCurrentText(p.labels_layer.name)
        self._show_mode()

    def _layer_removed(self, event) -> None:
        layer = event.value
        if layer is self._scan:
            self._drop_prompt_layers()
            self._scan = None
        for attr in ("_clicks", "_box", "_scribbles", "_preview"):
            if getattr(self, attr) is layer:
                setattr(self, attr, None)
                if attr != "_preview":
                    self._history = [h for h in self._history if h != attr[1:].rstrip("s")]
                    self._schedule()

    def _drop_prompt_layers(self) -> None:
        self._generation += 1  # whatever runs is now stale
        for attr in ("_clicks", "_box", "_scribbles", "_preview"):
            layer = getattr(self, attr)
            setattr(self, attr, None)
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._history.clear()
        self._set_preview(None)

    def _ensure_clicks(self):
        if self._clicks is not None and self._clicks in self.viewer.layers:
            return self._clicks
        scan = self.scan()
        ndim = len(_spatial_shape(scan))
        layer = napari.layers.Points(
            np.zeros((0, ndim)), ndim=ndim, name=f"{scan.name} clicks",
            features=pd.DataFrame({"positive": pd.Series([], dtype=bool)}),
            face_color="positive", face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
            border_color="white", border_width=0.1, size=7, metadata={_ROLE_KEY: "clicks"},
            **_grid_kwargs(scan))
        layer.feature_defaults = {"positive": True}
        self._clicks = self.viewer.add_layer(layer)
        layer.events.data.connect(self._clicks_changed)
        layer.bind_key("Control-Z", lambda _layer: self.undo_prompt(), overwrite=True)
        return layer

    def _ensure_preview(self):
        if self._preview is not None and self._preview in self.viewer.layers:
            return self._preview
        from napari.utils.colormaps import DirectLabelColormap

        scan = self.scan()
        active = self.viewer.layers.selection.active
        self._preview = self.viewer.add_labels(
            np.zeros(_spatial_shape(scan), np.uint8), name=f"{scan.name} click preview", opacity=0.5,
            colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: PREVIEW_COLOR}),
            metadata={_ROLE_KEY: "preview"}, **_grid_kwargs(scan))
        self._preview.editable = False
        self._keep_prompts_on_top()
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active  # Ctrl+Z stays with the clicks
        return self._preview

    def _keep_prompts_on_top(self) -> None:
        if self._clicks is not None and self._clicks in self.viewer.layers:
            i = self.viewer.layers.index(self._clicks)
            self.viewer.layers.move(i, len(self.viewer.layers))

    # ================================================================== prompts
    # Box and scribbles are drawn by this dock's own drag handler, not napari's shape and
    # brush tools: those place an oblique scan's strokes by the exact 3D point, up to two
    # slices away from the slice on screen (see clicked_voxel).
    def _draw_mode_toggled(self, *_):
        """Box or Scribble on: its layer becomes the active one and does not pan, so a drag draws."""
        sender = self.sender()
        if sender is not None and sender.isChecked():
            other = self.scribble_button if sender is self.box_button else self.box_button
            other.setChecked(False)
        self._switching = True  # making the layer moves the selection: not the user's choice
        try:
            for button, ensure in ((self.box_button, self._ensure_box),
                                   (self.scribble_button, self._ensure_scribbles)):
                if button.isChecked() or button is sender:
                    layer = ensure()
                    layer.mouse_pan = not button.isChecked()
                    if button.isChecked():
                        self.viewer.layers.selection.active = layer
        except TumorSegError as err:
            notify_error(err)
            self.box_button.setChecked(False)
            self.scribble_button.setChecked(False)
        finally:
            self._switching = False

    def _active_changed(self, *_):
        """Choosing another layer ends drawing (its drags pan again)."""
        if self._switching:
            return
        active = self.viewer.layers.selection.active
        for button, layer in ((self.box_button, self._box), (self.scribble_button, self._scribbles)):
            if button.isChecked() and (layer is None or active is not layer):
                button.setChecked(False)
                if layer is not None:
                    layer.mouse_pan = True

    def start_box(self) -> None:
        """Drags draw a box around the tumour on the slice shown (until toggled off)."""
        self.box_button.setChecked(True)

    def start_scribbles(self) -> None:
        """Drags paint tumour (or, with 'Not tumour' or Ctrl, what is not) on the slice shown."""
        self.scribble_button.setChecked(True)

    def _ensure_box(self):
        if self._box is not None and self._box in self.viewer.layers:
            return self._box
        scan = self.scan()
        active = self.viewer.layers.selection.active
        self._box = self.viewer.add_shapes(
            ndim=len(_spatial_shape(scan)), name=f"{scan.name} box", edge_color="yellow",
            face_color="transparent", edge_width=1.5, metadata={_ROLE_KEY: "box"}, **_grid_kwargs(scan))
        self._box.events.data.connect(self._box_changed)
        self._box.bind_key("Control-Z", lambda _layer: self.undo_prompt(), overwrite=True)
        self._restore_active(active)
        return self._box

    def _ensure_scribbles(self):
        from napari.utils.colormaps import DirectLabelColormap

        if self._scribbles is not None and self._scribbles in self.viewer.layers:
            return self._scribbles
        scan = self.scan()
        active = self.viewer.layers.selection.active
        colors = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0), SCRIBBLE_TUMOUR: POSITIVE_COLOR, SCRIBBLE_NOT: NEGATIVE_COLOR}
        self._scribbles = self.viewer.add_labels(
            np.zeros(_spatial_shape(scan), np.uint8), name=f"{scan.name} scribbles", opacity=0.8,
            colormap=DirectLabelColormap(color_dict=colors), metadata={_ROLE_KEY: "scribbles"},
            **_grid_kwargs(scan))
        # napari's own brush on this layer (a user's choice) still counts as a scribble.
        self._scribbles.events.paint.connect(self._scribbles_changed)
        self._scribbles.bind_key("Control-Z", lambda _layer: self.undo_prompt(), overwrite=True)
        self._restore_active(active)
        return self._scribbles

    def _restore_active(self, active) -> None:
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active

    def add_click(self, point, positive: bool | None = None) -> None:
        """One click at ``point`` (the scan's data coordinates); None = the dock's Tumour/Not toggle."""
        scan = self.scan()
        shape = _spatial_shape(scan)
        pt = np.asarray(point, float)[-len(shape):]
        if not all(-0.5 <= p < s - 0.5 for p, s in zip(pt, shape)):
            self.result_label.setText("that click is outside the scan")
            return
        if positive is None:
            positive = self.positive_radio.isChecked()
        layer = self._ensure_clicks()
        layer.selected_data = set()
        layer.feature_defaults = {"positive": bool(positive)}
        self._history.append("click")
        layer.data = np.vstack([layer.data, pt[None]])  # the data event re-segments

    def set_box(self, corner0, corner1) -> None:
        """The box prompt: a rectangle on the slice of ``corner0`` (data coordinates)."""
        layer = self._ensure_box()
        a, b = np.asarray(corner0, float), np.asarray(corner1, float)
        (y0, x0), (y1, x1) = a[-2:], b[-2:]
        corners = [(y0, x0), (y0, x1), (y1, x1), (y1, x0)]
        verts = np.array([(*a[:-2], y, x) for y, x in corners])
        with layer.events.data.blocker():
            if layer.nshapes:
                layer.selected_data = set(range(layer.nshapes))
                layer.remove_selected()
            layer.add_rectangles(verts)
        layer.refresh()

    def paint_scribble(self, points, positive: bool = True) -> None:
        """One scribble stroke through ``points`` (data coordinates): one undo step."""
        layer = self._ensure_scribbles()
        points = [np.asarray(p, float) for p in points]
        self._stroking = True  # the paint event that closes the stroke is ours
        try:
            with layer.block_history():
                for p0, p1 in zip(points[:1] + points[:-1], points):
                    self._stamp(layer, p0, p1, SCRIBBLE_TUMOUR if positive else SCRIBBLE_NOT)
        finally:
            self._stroking = False
        self._history.append("scribble")
        self._schedule()

    def _stamp(self, layer, p0, p1, value) -> None:
        """A disk brush of ~2 mm radius along the segment p0 -> p1 on p0's slice."""
        shape = _spatial_shape(layer)
        spacing = np.abs(np.asarray(layer.scale, float))[-2:]
        r = np.maximum(1.0, 2.0 / spacing)
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        n = int(np.ceil(np.abs(p1[-2:] - p0[-2:]).max() * 2)) + 1
        centres = np.linspace(p0[-2:], p1[-2:], n)
        ry, rx = int(np.ceil(r[0])), int(np.ceil(r[1]))
        dy, dx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        disk = (dy / r[0]) ** 2 + (dx / r[1]) ** 2 <= 1.0
        yx = (np.round(centres)[:, None, :] + np.stack([dy[disk], dx[disk]], axis=1)[None]).reshape(-1, 2)
        yx = np.unique(yx.astype(int), axis=0)
        keep = (yx[:, 0] >= 0) & (yx[:, 0] < shape[-2]) & (yx[:, 1] >= 0) & (yx[:, 1] < shape[-1])
        yx = yx[keep]
        lead = tuple(np.full(len(yx), int(np.round(c))) for c in p0[:-2])
        if len(yx):
            layer.data_setitem((*lead, yx[:, 0], yx[:, 1]), value)

    def _on_mouse(self, viewer, event):
        """Viewer drag callback: a press released without moving is a prompt click; with Box or
        Scribble on, a drag draws that prompt.

        Only while the active layer is in pan/zoom mode, so napari's own tools (the brush on
        the target, say) are never taken for a prompt.
        """
        if event.type != "mouse_press" or event.button not in (1, 2) or self._scan is None:
            return
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return
        if viewer.dims.ndisplay != 2 or self._scan not in viewer.layers:
            return
        scan = self._scan
        flip = bool(set(event.modifiers) & {"Control", "Shift", "Meta"}) or event.button == 2
        positive = self.positive_radio.isChecked() != flip
        press_pos = np.asarray(event.pos, float)
        start = clicked_voxel(scan, event.position, viewer.dims)
        drawing = ("box" if self.box_button.isChecked() and active is self._box
                   else "scribble" if self.scribble_button.isChecked() and active is self._scribbles else None)
        stroke = [start]
        moved = False
        while True:
            yield
            # The release counts too: napari may drop moves that come faster than it draws.
            moved = moved or bool(np.abs(np.asarray(event.pos, float) - press_pos).max() > _CLICK_SLOP_PX)
            if moved and drawing is not None and scan in viewer.layers:
                here = clicked_voxel(scan, event.position, viewer.dims)
                here[:-2] = start[:-2]  # the stroke stays on the slice it started on
                stroke.append(here)
                if drawing == "box":
                    self.set_box(start, here)
            if event.type != "mouse_move":
                break
        if scan not in viewer.layers:
            return
        try:
            if drawing == "box" and moved:
                self._history = [h for h in self._history if h != "box"] + ["box"]
                self._schedule()
            elif drawing == "scribble":
                self.paint_scribble(stroke, positive)
            elif not moved:
                self.add_click(start, positive)
        except TumorSegError as err:
            notify_error(err)

    def _clicks_changed(self, event=None) -> None:
        action = getattr(event, "action", None)
        if action is not None and str(action).split(".")[-1].lower() not in ("added", "removed", "changed"):
            return
        n = 0 if self._clicks is None else len(self._clicks.data)
        clicks_in_history = self._history.count("click")
        if n < clicks_in_history:  # removed with napari's own tools
            for _ in range(clicks_in_history - n):
                i = len(self._history) - 1 - self._history[::-1].index("click")
                del self._history[i]
        elif n > clicks_in_history:  # added with napari's point tool
            self._history.extend(["click"] * (n - clicks_in_history))
        self._schedule()

    def _box_changed(self, event=None) -> None:
        action = getattr(event, "action", None)
        if action is not None and str(action).split(".")[-1].lower() not in ("added", "removed", "changed"):
            return
        n = 0 if self._box is None else len(self._box.data)
        if n > self._history.count("box"):
            self._history.append("box")
        while self._history.count("box") > n:
            i = len(self._history) - 1 - self._history[::-1].index("box")
            del self._history[i]
        self._schedule()

    def _scribbles_changed(self, *_):
        if self._stroking:
            return
        self._history.append("scribble")
        self._schedule()

    def undo_prompt(self) -> None:
        """Remove the newest prompt (click, box or scribble stroke) and re-segment."""
        if not self._history:
            self.result_label.setText("no prompt to undo")
            return
        kind = self._history.pop()
        if kind == "click" and self._clicks is not None and len(self._clicks.data):
            self._history.append("click")  # _clicks_changed pops it again when the data shrinks
            self._clicks.data = self._clicks.data[:-1]
            return
        if kind == "box" and self._box is not None and len(self._box.data):
            self._history.append("box")  # _box_changed pops it again when the shape goes
            self._box.selected_data = {len(self._box.data) - 1}
            self._box.remove_selected()
            return
        if kind == "scribble" and self._scribbles is not None:
            self._scribbles.undo()
        self._schedule()

    def prompts(self) -> Prompts:
        """The prompts now on screen, in the scan's (z, y, x) voxel coordinates."""
        scan = self._scan
        ndim = len(_spatial_shape(scan)) if scan is not None else 3
        pos = neg = np.zeros((0, 3))
        if self._clicks is not None and len(self._clicks.data):
            pts = _to_zyx(self._clicks.data, ndim)
            sign = self._clicks.features["positive"].to_numpy(bool)
            pos, neg = pts[sign], pts[~sign]
        box = None
        if self._box is not None and len(self._box.data):
            verts = _to_zyx(self._box.data[-1], ndim)
            lo, hi = verts.min(axis=0), verts.max(axis=0)
            box = (float(np.round(verts[0, 0])), lo[1], lo[2], hi[1], hi[2])
        scribbles = None
        if self._scribbles is not None:
            data = np.asarray(self._scribbles.data)
            if data.any():
                scribbles = _as_volume(data, ndim)
        return Prompts(pos, neg, box, scribbles)

    def _has_prompts(self) -> bool:
        p = self.prompts() if self._scan is not None else None
        return p is not None and (not p.empty or len(p.negative) > 0
                                  or (p.scribbles is not None and p.scribbles.any()))

    # ================================================================== engines
    def _engine_changed(self, text: str) -> None:
        if text == AUTO and self._auto is None:
            self._load_auto_engine()
        self._show_mode()
        if self._has_prompts():
            self._schedule()

    def _load_auto_engine(self) -> None:
        """The best available engine is found off the GUI thread (it may load a model)."""
        if self._auto_worker is not None:
            return
        self.engine_status.setText("automatic: looking for the best engine…")
        worker = create_worker(_best_engine, _start_thread=False, _ignore_errors=True)

        def done(choice):
            self._auto = (choice.engine, f"automatic → {describe_engine(choice.engine)}\n({choice.reason})")

        def failed(err):
            from napari_tumorseg.interactive.classic import ClassicEngine

            self._auto = (ClassicEngine(), f"automatic → {CLASSIC_TEXT} (the starter model failed: {err})")

        def finished():
            self._auto_worker = None
            self._show_mode()
            self.engine_ready.emit()
            if self._has_prompts():
                self._schedule()

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self._auto_worker = worker
        worker.start()

    def engine(self):
        """(engine, description) for the combo's choice; None while the automatic one loads."""
        text = self.engine_combo.currentText()
        if text == AUTO:
            return self._auto
        if text == CLASSIC:
            if CLASSIC not in self._engines:
                from napari_tumorseg.interactive.classic import ClassicEngine

                engine = ClassicEngine()
                self._engines[CLASSIC] = (engine, describe_engine(engine))
            return self._engines[CLASSIC]
        return self._engines.get(text)

    def set_engine(self, engine, description: str | None = None) -> str:
        """Offer ``engine`` (anything with the ClickEngine protocol) in the combo and choose it."""
        label = f"learned: {engine.name}" if not str(engine.name).startswith("learned") else str(engine.name)
        base, k = label, 2
        while label in self._engines and self._engines[label][0] is not engine:
            label, k = f"{base} ({k})", k + 1
        self._engines[label] = (engine, description or describe_engine(engine))
        if self.engine_combo.findText(label) < 0:
            self.engine_combo.addItem(label)
        self.engine_combo.setCurrentText(label)
        self._engine_changed(label)
        return label

    def load_checkpoint(self, path):
        """Load a click-guided checkpoint off the GUI thread; it becomes the engine choice.

        Returns the worker; ``engine_ready`` is emitted when it is in the combo, and a file that
        is not a click checkpoint is one notification.
        """
        from napari_tumorseg.interactive.engines import load_learned

        self.engine_status.setText(f"loading {Path(path).name}…")
        worker = create_worker(load_learned, path, _start_thread=False, _ignore_errors=True)

        def loaded(engine):
            self.set_engine(engine, describe_engine(engine))
            self.engine_ready.emit()

        def failed(err):
            self._show_mode()
            notify_error(err if isinstance(err, TumorSegError) else TumorSegError(f"cannot load {path}: {err}"))

        worker.returned.connect(loaded)
        worker.errored.connect(failed)
        worker.start()
        return worker

    def _pick_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Click-guided checkpoint", "", "Checkpoint (*.pt)")
        if path:
            self.load_checkpoint(path)

    def _refining(self):
        """The prediction this scan's clicks refine (target = the predicted labels), or None."""
        p = self.session.prediction
        target = self.target()
        if (p is not None and target is not None and p.labels_layer is target and p.source is self._scan
                and self._scan is not None):
            return p
        return None

    def _show_mode(self) -> None:
        eng = self.engine()
        text = eng[1] if eng is not None else self.engine_status.text() or "automatic: loading…"
        if self._refining() is not None:
            text += f"\nrefining the prediction '{self.target().name}'"
        self.engine_status.setText(text)

    # ================================================================== segmentation
    def _schedule(self) -> None:
        """Coalesce bursts of layer events (a drag, a stroke) into one re-segmentation."""
        self._generation += 1  # a running job is stale from now on
        self._resegment_timer.start(0)

    def resegment(self) -> None:
        """Run the engine on the current prompts; a running job is superseded, not stacked."""
        self._generation += 1
        if self._worker is not None:
            self._pending = True  # starts as soon as the running job notices it is stale
            return
        self._pending = False
        if self._scan is None or self._scan not in self.viewer.layers:
            return
        prompts = self.prompts()
        refine = self._refining()
        if prompts.empty and not (refine is not None and self._has_prompts()):
            self._set_preview(None)
            return
        eng = self.engine()
        if eng is None:
            self.result_label.setText("waiting for the engine…")
            return  # the automatic engine's loader re-schedules when ready
        engine = eng[0]
        self.session.click_engine = engine
        try:
            scan = self._scan
            if hasattr(engine, "prep"):
                vol = self.session.model_input(scan, engine)
            else:
                vol = self.session.volume_of(scan)
            image = np.asarray(vol.data)
            image = image if vol.has_channels else image[None]
            spacing = tuple(vol.spacing)[-3:]
            prior = None
            if refine is not None:
                prior = _as_volume(np.asarray(refine.labels_layer.data) > 0, refine.labels_layer.ndim)
        except TumorSegError as err:
            notify_error(err)
            return
        gen = self._generation
        self.jobs_started += 1
        worker = create_worker(_segment_job, engine, image, spacing, prompts, prior,
                               lambda: gen != self._generation, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda res, gen=gen, refining=refine is not None: self._landed(gen, res, refining))
        worker.errored.connect(lambda err, gen=gen: self._failed(gen, err))
        worker.finished.connect(self._job_finished)
        self._worker = worker
        self.result_label.setText("segmenting…")
        worker.start()

    def _landed(self, gen: int, result, refining: bool) -> None:
        if gen != self._generation:
            return  # a newer prompt came in: this answer is for prompts no longer on screen
        mask, seconds = result
        if self._scan is None or mask.shape != _as_volume(np.zeros(_spatial_shape(self._scan), bool),
                                                          len(_spatial_shape(self._scan))).shape:
            return
        self.last_seconds = seconds
        self._set_preview(mask, refining)

    def _failed(self, gen: int, err: BaseException) -> None:
        if gen != self._generation:
            return  # a superseded job may stop by raising; that is not the user's problem
        self.result_label.setText("segmentation failed")
        notify_error(err if isinstance(err, TumorSegError) else TumorSegError(f"segmentation failed: {err}"))

    def _job_finished(self) -> None:
        self._worker = None
        if self._pending:
            self.resegment()

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._pending or self._resegment_timer.isActive()

    def _set_preview(self, mask: np.ndarray | None, refining: bool = False) -> None:
        self.preview_mask = mask
        self._preview_refines = refining
        if mask is None:
            if self._preview is not None and self._preview in self.viewer.layers:
                self._preview.data = np.zeros_like(self._preview.data)
            self.result_label.setText("no preview")
        else:
            layer = self._ensure_preview()
            layer.data = _from_volume(mask, layer.ndim).astype(np.uint8)
            n = int(mask.sum())
            spacing = self.session.volume_of(self._scan).spacing
            ml = n * float(np.prod(spacing)) / 1000.0
            secs = f"{self.last_seconds:.2f} s · " if self.last_seconds is not None else ""
            self.result_label.setText(f"{secs}{n:,} voxels · {ml:.2f} mL")
        self.preview_updated.emit()

    # ================================================================== accept / clear
    def accept(self):
        """Write the preview into the target under the chosen value as ONE undo step."""
        if self.preview_mask is None or not self.preview_mask.any() and not self._preview_refines:
            notify_error(TumorSegError("nothing to accept: click on the tumour first"))
            return None
        scan = self._scan
        target = self.target()
        value = int(self.value_spin.value())
        if target is None:
            target = self.viewer.add_labels(
                np.zeros(_spatial_shape(scan), np.uint8), name=f"{scan.name} segmentation",
                metadata={k: v for k, v in scan.metadata.items() if k != _ROLE_KEY}, **_grid_kwargs(scan))
            self._refresh_layers()
            self.target_combo.setCurrentText(target.name)
        data = np.asarray(target.data)
        mask = _from_volume(self.preview_mask, target.ndim)
        if mask.shape != data.shape:
            notify_error(TumorSegError(f"'{target.name}' {data.shape} is not on the scan's grid {mask.shape}"))
            return None
        if np.issubdtype(data.dtype, np.integer) and value > np.iinfo(data.dtype).max:
            notify_error(TumorSegError(f"value {value} does not fit '{target.name}' ({data.dtype})"))
            return None
        new = data.copy()
        if self._preview_refines:
            # The refined mask replaces the prediction; kept voxels keep their class.
            new[~mask] = 0
            new[mask & (data == 0)] = value
        else:
            new[mask] = value
        changed = apply_edit(target, new)
        name = _label_names(target).get(value)
        show_info(f"accepted: {int(mask.sum()):,} voxels as {value}{f' ({name})' if name else ''} "
                  f"in '{target.name}' ({changed:,} changed)")
        self.clear()
        return target

    def clear(self) -> None:
        """Drop every prompt and the preview (the prompt layers stay, empty)."""
        self._generation += 1
        self._history.clear()
        if self._clicks is not None:
            with self._clicks.events.data.blocker():
                self._clicks.data = np.zeros((0, self._clicks.ndim))
            self._clicks.refresh()
        if self._box is not None and len(self._box.data):
            with self._box.events.data.blocker():
                self._box.data = []
            self._box.refresh()
        if self._scribbles is not None:
            self._scribbles.data = np.zeros_like(self._scribbles.data)
        self._set_preview(None)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self._generation += 1
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        super().closeEvent(event)
