"""Dock widget: segment a tumour from clicks, a box or scribbles; preview it; accept it.

A thin driver of :mod:`napari_tumorseg.interactive`. The prompts live in napari layers on
the scan's grid (:mod:`._click_prompts`); every change re-segments on a worker thread. One
job runs at a time (the engines are not re-entrant, and the CPU has two cores): a newer
prompt bumps a generation counter that the running job's ``cancel`` polls, and the latest
prompts run as soon as it stops, so only the latest result lands. The result is a preview
layer; Accept writes it into the target labels as one undo step (:func:`correct.apply_edit`).
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.widgets._click_prompts import (
    ROLE_KEY,
    PromptLayers,
    as_volume,
    clicked_voxel,
    displayed_plane,
    from_volume,
    grid_kwargs,
    on_scan_grid,
    spatial_shape,
)
from napari_tumorseg.jobs import LatestWins
from napari_tumorseg.user_edits import accept_into
from napari_tumorseg.interactive.targets import region_mask
from napari_tumorseg.per_viewer import real_viewer
from napari_tumorseg.widgets._common import (
    hint_label,
    notify_error,
    sanitise,
    scroll_body,
    set_choices,
    show_info,
    start_worker,
    worker_error_handler,
)
from napari_tumorseg.widgets._session import session_for
from napari_tumorseg.widgets.correct import apply_edit

HINT = "Click on the tumour; Ctrl+click what is not tumour; Accept to keep"
#: The dock's keys while its click tool holds the canvas (napari key names -> action).
KEYS = {"P": "point", "B": "box", "S": "scribble", "L": "lasso", "T": "polarity", "Enter": "accept",
        "Escape": "clear"}
KEY_HINT = "keys: P point · B box · S scribble · L lasso · T tumour/not · Enter accept · Esc clear"
NEW_LAYER = "new labels layer"
AUTO = "automatic (best available)"
CLASSIC = "classic (no model)"
CLASSIC_TEXT = "classic: seeded 3D region (no model)"
PREVIEW_COLOR = (1.0, 0.85, 0.0, 1.0)
# A press that moves more than this many screen pixels is a pan, not a click.
_CLICK_SLOP_PX = 4


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


class _LoadedLabels:
    """A labels layer the user asked the clicks to correct (not the session's prediction)."""

    predictor = None

    def __init__(self, layer) -> None:
        self.labels_layer = layer

    def convention(self) -> str:
        """The layer's BraTS label convention: from its label names (a region map this plugin
        made, an NRRD segmentation's segments), else its name, else its values."""
        from napari_tumorseg.brats import convention_of_map

        layer = self.labels_layer

        def extremes():  # read only when no name says it (this runs on the GUI thread)
            data = np.asarray(layer.data)
            return int(data.min()), int(data.max())

        return convention_of_map(extremes, _label_names(layer), [layer.name])


def _segment_job(engine, image, spacing, prompts, prior, cancel, previous=None, target="lesion",
                 channel_names=None):
    """Worker-thread body: the engine's answer, the seconds it took, and the object's
    threshold when clicks near the edge moved it (None otherwise: the user is told why the
    boundary moved everywhere), and which model of a chain answered this scan (None: the
    engine is one model)."""
    from napari_tumorseg.interactive.engines import engine_label, segment_with_prompts

    t0 = time.perf_counter()
    mask = segment_with_prompts(engine, image, spacing, prompts, prior=prior, cancel=cancel,
                                previous=previous, target=target, channel_names=channel_names)
    seconds = time.perf_counter() - t0
    used, by = engine, None
    if hasattr(engine, "for_case"):
        used = engine.for_case(channel_names, int(np.shape(image)[0]) if np.ndim(image) == 4 else 1)
        by = engine_label(used, default="classic engine")
    moved = getattr(used, "answer_threshold", None)
    if moved is not None and abs(moved - float(getattr(used, "threshold", moved))) < 1e-6:
        moved = None
    return mask, seconds, moved, by


def describe_engine(engine) -> str:
    """One line saying what answers the clicks."""
    from napari_tumorseg.interactive.classic import ClassicEngine

    if isinstance(engine, ClassicEngine):
        return CLASSIC_TEXT
    dims = getattr(engine, "dims", None)
    if dims is None:
        return str(engine.name)
    return f"{engine.name} ({'3D crop' if dims == 3 else '2D+propagation'})"


def _best_engine(volume: bool = False):
    """Worker-thread body: the automatic choice for a volume or an image (it may load the starter)."""
    from napari_tumorseg.interactive.engines import default_engine

    return default_engine(volume=volume)


class SegmentClicksWidget(QWidget):
    #: emitted on the GUI thread when a segmentation lands in the preview (or the preview clears)
    preview_updated = Signal()
    #: emitted when the automatic engine is known (loaded in the background)
    engine_ready = Signal()

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)  # the viewer itself, not the proxy napari hands a dock
        self.session = session_for(napari_viewer)
        self.preview_mask: np.ndarray | None = None  # (z, y, x) bool on the scan grid
        self.last_seconds: float | None = None
        self.moved_threshold: float | None = None  # the object's threshold after edge clicks
        self.answered_by: str | None = None  # which model of the automatic chain answered
        self.jobs_started = 0
        self.warm_ups = 0  # scans prepared ahead of their first click (_warm_up)
        self._scan = None  # the scan the prompts belong to
        self._answers_key, self._answers = None, None  # _answers_this_scan's last answer
        self.prompt_layers: PromptLayers | None = None
        self._preview = None
        self._preview_refines, self._preview_region = False, None
        self.jobs = LatestWins()  # the rule of re-segmentation: the newest prompts win
        self._worker = None
        self._engines: dict[str, tuple[object, str]] = {}  # combo text -> (engine, description)
        self._auto: tuple[object, str] | None = None
        self._auto_volume = False  # whether the automatic choice was made for a volume
        self._auto_worker = None
        self._switching = False
        self._shown = None  # (prompts, mask) of the preview on screen: the never-worse rule's base
        self._keys_on: list = []  # (keymap provider, key, what it had before) while our keys are bound

        # -- what to segment, where to put it -------------------------------------------
        self.hint = hint_label(HINT)
        self.scan_combo = QComboBox()
        self.scan_combo.setToolTip("the scan to segment; a multi-channel case uses all its channels")
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("the labels layer Accept writes into")
        self.correct_box = QCheckBox("Correct it: the clicks start from its labels")
        self.correct_box.setToolTip("the clicks correct this layer's labels (a loaded segmentation): a "
                                    "click adds what it missed or removes what it got wrong, and Accept "
                                    "replaces them; with a BraTS target, that region of it")
        self.correct_box.setVisible(False)
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
        from napari_tumorseg.interactive.targets import TARGETS

        self.region_combo = QComboBox()
        self.region_combo.addItems(list(TARGETS.values()))
        self.region_combo.setToolTip("what the clicks segment: the lesion (any label), or the BraTS whole "
                                     "tumour, tumour core or enhancing tumour (the engine reads the "
                                     "sequences that show it best)")

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
        self.lasso_button = QPushButton("Lasso")
        self.lasso_button.setToolTip("on: drag a closed outline on the slice shown; its inside is the "
                                     "prompt (tumour, or with Ctrl / 'Not tumour' what is not)")
        self.lasso_button.setCheckable(True)
        self.lasso_button.toggled.connect(self._draw_mode_toggled)
        self.positive_radio.toggled.connect(self._show_tool)
        self.tool_label = QLabel("")
        self.tool_label.setWordWrap(True)
        self.tool_label.setToolTip(KEY_HINT)
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
        self.overwrite_other = QCheckBox("Overwrite other labels")
        self.overwrite_other.setToolTip("off: Accept leaves voxels of other label values (another lesion or "
                                        "region) as they are")
        self.click_tool = QPushButton("Click to segment")
        self.click_tool.setCheckable(True)
        self.click_tool.setToolTip("on: a click on the canvas is a prompt (the viewer's one click tool; "
                                   "turning on another dock's click tool turns this off)")
        self.click_tool.toggled.connect(self._click_tool_toggled)

        # Compact on a 1366x768 screen beside other docks: scroll rather than grow.
        inner = scroll_body(self)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Scan", self.scan_combo)
        form.addRow("Into", self.target_combo)
        form.addRow("", self.correct_box)
        row = QHBoxLayout()
        row.addWidget(self.value_spin)
        row.addWidget(self.value_name, 1)
        form.addRow("Value", row)
        row = QHBoxLayout()
        row.addWidget(self.engine_combo, 1)
        row.addWidget(self.load_button)
        form.addRow("Engine", row)
        form.addRow(self.engine_status)
        form.addRow("Target", self.region_combo)
        row = QHBoxLayout()
        row.addWidget(self.positive_radio)
        row.addWidget(self.negative_radio)
        row.addStretch(1)
        row.addWidget(self.box_button)
        row.addWidget(self.scribble_button)
        row.addWidget(self.lasso_button)
        form.addRow("Click", row)
        form.addRow(self.click_tool)
        form.addRow(self.tool_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.undo_button)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.accept_button)
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.hint)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.overwrite_other)
        lay.addWidget(self.result_label)
        lay.addStretch(1)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        for combo in (self.scan_combo, self.target_combo, self.engine_combo):
            # Long layer names must not widen the dock past a small screen.
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)

        self._resegment_timer = QTimer(self)
        self._resegment_timer.setSingleShot(True)
        self._resegment_timer.timeout.connect(self.resegment)
        # A warm-up starts once the layer events of one turn of the event loop are over: a
        # case opening (its scans one by one) or a viewer closing (every layer removed) would
        # otherwise start one for each state on the way.
        self._warm_timer = QTimer(self)
        self._warm_timer.setSingleShot(True)
        self._warm_timer.timeout.connect(self._start_warm_up)
        self._warm_args = None

        self.scan_combo.currentTextChanged.connect(self._scan_changed)
        self.target_combo.currentTextChanged.connect(self._target_changed)
        self.correct_box.toggled.connect(self._correct_toggled)
        self.value_spin.valueChanged.connect(self._show_value_name)
        self.engine_combo.currentTextChanged.connect(self._engine_changed)
        self.region_combo.currentTextChanged.connect(self._region_changed)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        self.viewer.layers.events.removed.connect(self._layer_removed)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.session.events.prediction.connect(self._follow_prediction)
        self.session.events.case.connect(self._new_case)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.viewer.layers.selection.events.active.connect(self._active_changed)
        self._refresh_layers()
        self._engine_changed(self.engine_combo.currentText())
        # A click on the tumour segments it from the start (the dock's first use), unless
        # another dock's click tool already holds the canvas.
        self.click_tool.setChecked(self.session.active_tool is None)
        self._show_tool()

    # ================================================================== layers
    def _is_ours(self, layer) -> bool:
        return isinstance(layer.metadata, dict) and ROLE_KEY in layer.metadata

    def _scan_layers(self) -> list:
        return [l for l in self.session.image_layers() if not self._is_ours(l)]

    def _label_layers(self) -> list:
        return [l for l in self.viewer.layers if isinstance(l, napari.layers.Labels) and not self._is_ours(l)]

    def _new_case(self, *_):
        self.session.select_newest_scan(self.scan_combo, self._refresh_layers)

    def _refresh_layers(self, *_):
        set_choices(self.scan_combo, [l.name for l in self._scan_layers()])
        before = self.target_combo.currentText()
        set_choices(self.target_combo, [NEW_LAYER] + [l.name for l in self._label_layers()])
        if self.scan_combo.currentText() and self._scan is None:
            self._scan_changed(self.scan_combo.currentText())
        if self.target_combo.currentText() != before:
            self._target_changed(self.target_combo.currentText())
        else:
            self._show_mode()  # a scan of the case opened or closed: who answers may change

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
        self._drop_scan()
        self._scan = layer
        if layer is not None:
            self.prompt_layers = PromptLayers(self.viewer, layer, self._schedule, self.undo_prompt)
        if self._auto is not None and self._auto_volume != self._scan_is_volume():
            # The best engine differs between a volume and a single image: choose again.
            self._auto = None
            if self.engine_combo.currentText() == AUTO:
                self._load_auto_engine()
        self._follow_prediction()

    def _scan_is_volume(self) -> bool:
        layer = self._scan
        return layer is not None and layer.ndim >= 3 and int(np.shape(layer.data)[-3]) > 1

    def _drop_scan(self) -> None:
        self.jobs.supersede()  # whatever runs is now stale
        if self.prompt_layers is not None:
            self.prompt_layers.remove()
            self.prompt_layers = None
        preview, self._preview = self._preview, None
        if preview is not None and preview in self.viewer.layers:
            self.viewer.layers.remove(preview)
        self._set_preview(None)
        self._scan = None

    def _correct_toggled(self, *_):
        self._shown = None  # the answer on screen was not built on these labels
        self._target_changed()

    def _target_changed(self, *_):
        if self._has_prompts():
            self._schedule()  # refining a prediction or not may have changed
        self._show_mode()

    def _show_value_name(self, *_):
        if not self.value_spin.isEnabledTo(self):  # a region map: Accept sets the Target's region
            self.value_name.setText("Accept sets the Target's region")
            return
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
            self._drop_scan()
        elif layer is self._preview:
            self._preview = None
        elif self.prompt_layers is not None and self.prompt_layers.forget(layer):
            self._schedule()

    def _ensure_preview(self):
        if self._preview is not None and self._preview in self.viewer.layers:
            return self._preview
        from napari.utils.colormaps import DirectLabelColormap

        scan = self._scan
        active = self.viewer.layers.selection.active
        self._preview = self.viewer.add_labels(
            np.zeros(spatial_shape(scan), np.uint8), name=f"{scan.name} click preview", opacity=0.5,
            colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: PREVIEW_COLOR}),
            **on_scan_grid(scan, "preview"))
        self._preview.editable = False
        clicks = self.prompt_layers.clicks if self.prompt_layers is not None else None
        if clicks is not None and clicks in self.viewer.layers:  # the clicks stay on top
            self.viewer.layers.move(self.viewer.layers.index(clicks), len(self.viewer.layers))
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active  # Ctrl+Z stays with the clicks
        return self._preview

    # ================================================================== prompts
    def _draw_mode_toggled(self, *_):
        """Box or Scribble on: its layer becomes the active one and does not pan, so a drag draws."""
        sender = self.sender()
        draw = (self.box_button, self.scribble_button, self.lasso_button)
        if sender is not None and sender.isChecked():
            for other in draw:
                if other is not sender:
                    other.setChecked(False)
        self._show_tool()
        if self.prompt_layers is None:
            if sender is not None and sender.isChecked():
                notify_error(TumorSegError("open a scan to segment"))
                sender.setChecked(False)
            return
        self._switching = True  # making the layer moves the selection: not the user's choice
        try:
            layers = self.prompt_layers
            for button, ensure in ((self.box_button, layers.ensure_box),
                                   (self.scribble_button, layers.ensure_scribbles),
                                   (self.lasso_button, layers.ensure_scribbles)):
                if button.isChecked() or button is sender:
                    layer = ensure()
                    self._bind_layer_keys(layer)
                    # Scribble and lasso share a layer: it pans only when neither is on.
                    layer.mouse_pan = not any(b.isChecked() for b, e in (
                        (self.box_button, layers.box), (self.scribble_button, layers.scribbles),
                        (self.lasso_button, layers.scribbles)) if e is layer)
                    if button.isChecked():
                        self.viewer.layers.selection.active = layer
        finally:
            self._switching = False

    def _active_changed(self, *_):
        """Choosing another layer ends drawing (its drags pan again)."""
        if self._switching or self.prompt_layers is None:
            return
        active = self.viewer.layers.selection.active
        for button, layer in ((self.box_button, self.prompt_layers.box),
                              (self.scribble_button, self.prompt_layers.scribbles),
                              (self.lasso_button, self.prompt_layers.scribbles)):
            if button.isChecked() and (layer is None or active is not layer):
                button.setChecked(False)
                if layer is not None:
                    layer.mouse_pan = True

    def _click_tool_toggled(self, on: bool) -> None:
        if on:
            self.session.claim_tool("Segment by clicks", self._release_click_tool)
        else:
            self.session.release_tool(self._release_click_tool)
        self._bind_keys(on)
        self._show_tool()

    # ================================================================== keys
    def _key_action(self, what: str):
        def act(_provider=None):
            if not self.click_tool.isChecked():
                return
            if what == "point":
                for b in (self.box_button, self.scribble_button, self.lasso_button):
                    b.setChecked(False)
            elif what in ("box", "scribble", "lasso"):
                button = getattr(self, f"{what}_button")
                button.setChecked(not button.isChecked())
            elif what == "polarity":
                (self.negative_radio if self.positive_radio.isChecked() else self.positive_radio).setChecked(True)
            elif what == "accept":
                self.accept()
            elif what == "clear":
                self.clear()
            self._show_tool()
        act.__name__ = f"tumorseg_clicks_{what}"
        return act

    def _bind_on(self, provider) -> None:
        for key, what in KEYS.items():
            before = provider.bind_key(key, self._key_action(what), overwrite=True)
            self._keys_on.append((provider, key, before))

    def _bind_keys(self, on: bool) -> None:
        """The dock's keys (:data:`KEYS`) on the viewer and on its own prompt layers (whose
        layer types bind some of those letters), only while the click tool holds the canvas;
        what they covered comes back when it lets go."""
        if not on:
            for provider, key, before in reversed(self._keys_on):
                provider.bind_key(key, before, overwrite=True)
            self._keys_on = []
            return
        if self._keys_on:
            return
        self._bind_on(self.viewer)
        if self.prompt_layers is not None:
            for layer in (self.prompt_layers.clicks, self.prompt_layers.box, self.prompt_layers.scribbles,
                          self._preview):
                self._bind_layer_keys(layer)

    def _layer_inserted(self, event) -> None:
        """A prompt or preview layer made while the keys are on gets them too."""
        layer = event.value
        if self._is_ours(layer):
            self._bind_layer_keys(layer)

    def _bind_layer_keys(self, layer) -> None:
        if layer is None or not self.click_tool.isChecked() or not self._keys_on:
            return
        if any(p is layer for p, _, _ in self._keys_on):
            return
        self._bind_on(layer)

    def tool(self) -> str:
        """The drawing tool on: point, box, scribble or lasso."""
        for name in ("box", "scribble", "lasso"):
            if getattr(self, f"{name}_button").isChecked():
                return name
        return "point"

    def _show_tool(self, *_) -> None:
        polarity = "tumour" if self.positive_radio.isChecked() else "not tumour"
        if self.click_tool.isChecked():
            self.tool_label.setText(f"Tool: {self.tool()} · {polarity}  ({KEY_HINT})")
        else:
            self.tool_label.setText(f"Tool: off ({self.tool()} · {polarity})")

    def region(self) -> str:
        """The target the clicks segment (a name of :data:`interactive.targets.TARGETS`)."""
        from napari_tumorseg.interactive.targets import target_from_label

        return target_from_label(self.region_combo.currentText())

    def _region_changed(self, *_):
        # The answer on screen was another region's: the never-worse rule must not hold the
        # next answer to it.
        self._shown = None
        if self._refining() is not None:
            self._show_mode()  # which region of the prediction the clicks now correct
        if self._has_prompts():
            self._schedule()

    def _release_click_tool(self) -> None:
        """Another dock took the canvas: clicks stop being prompts."""
        self.click_tool.setChecked(False)

    def start_box(self) -> None:
        """Drags draw a box around the tumour on the slice shown (until toggled off)."""
        self.box_button.setChecked(True)

    def start_scribbles(self) -> None:
        """Drags paint tumour (or, with 'Not tumour' or Ctrl, what is not) on the slice shown."""
        self.scribble_button.setChecked(True)

    def start_lasso(self) -> None:
        """A drag outlines a region on the slice shown; its inside is the prompt."""
        self.lasso_button.setChecked(True)

    def add_click(self, point, positive: bool | None = None) -> None:
        """One click at ``point`` (the scan's data coordinates); None = the dock's Tumour/Not toggle."""
        self.scan()
        if self.prompt_layers is None or not self.prompt_layers.inside(point):
            self.result_label.setText("that click is outside the scan")
            return
        self.prompt_layers.add_click(point, self.positive_radio.isChecked() if positive is None else positive)

    def _on_mouse(self, viewer, event):
        """Viewer drag callback: a press released without moving is a prompt click; with Box or
        Scribble on, a drag draws that prompt.

        Only while the active layer is in pan/zoom mode, so napari's own tools (the brush on
        the target, say) are never taken for a prompt.
        """
        layers = self.prompt_layers
        if event.type != "mouse_press" or event.button not in (1, 2) or layers is None:
            return
        if not self.click_tool.isChecked():
            return  # another dock's click tool holds the canvas
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return
        scan = self._scan
        if scan not in viewer.layers:
            return
        if viewer.dims.ndisplay != 2:
            self.result_label.setText("prompts are placed in the 2D view")
            return
        flip = bool(set(event.modifiers) & {"Control", "Shift", "Meta"}) or event.button == 2
        positive = self.positive_radio.isChecked() != flip
        press_pos = np.asarray(event.pos, float)
        start = clicked_voxel(scan, event.position, viewer.dims)
        drawing = ("box" if self.box_button.isChecked() and active is layers.box
                   else "scribble" if self.scribble_button.isChecked() and active is layers.scribbles
                   else "lasso" if self.lasso_button.isChecked() and active is layers.scribbles else None)
        plane = displayed_plane(scan, viewer.dims)
        if plane is None:
            plane = (scan.ndim - 2, scan.ndim - 1)
        hidden = [a for a in range(len(start)) if a not in plane]
        stroke = [start]
        moved = False
        while True:
            yield
            # The release counts too: napari may drop moves that come faster than it draws.
            moved = moved or bool(np.abs(np.asarray(event.pos, float) - press_pos).max() > _CLICK_SLOP_PX)
            if moved and drawing is not None and scan in viewer.layers:
                here = clicked_voxel(scan, event.position, viewer.dims)
                here[hidden] = start[hidden]  # the stroke stays on the slice it started on
                stroke.append(here)
                if drawing == "box":
                    layers.set_box(start, here, plane)
            if event.type != "mouse_move":
                break
        if scan not in viewer.layers or layers is not self.prompt_layers:
            return
        if drawing == "box" and moved:
            layers.box_done()
        elif drawing == "scribble":
            layers.paint_scribble(stroke, positive, plane)
        elif drawing == "lasso":
            if not (moved and layers.paint_lasso(stroke, positive, plane)):
                self.result_label.setText("a lasso is a closed outline: drag around the region")
        elif not moved:
            self.add_click(start, positive)
            if layers.clicks is not None:
                viewer.layers.selection.active = layers.clicks  # so Ctrl+Z takes the click back

    def undo_prompt(self) -> None:
        """Remove the newest prompt (click, box or scribble stroke) and re-segment."""
        if self.prompt_layers is None or not self.prompt_layers.undo():
            self.result_label.setText("no prompt to undo")

    def prompts(self):
        """The prompts on screen, in the scan's (z, y, x) voxel coordinates."""
        from napari_tumorseg.interactive.prompts import Prompts

        return self.prompt_layers.prompts() if self.prompt_layers is not None else Prompts()

    def _has_prompts(self) -> bool:
        return self.prompt_layers is not None and self.prompt_layers.any()

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
        volume = self._scan_is_volume()
        worker = create_worker(_best_engine, volume, _start_thread=False, _ignore_errors=True)

        def done(choice):
            self._auto_volume = volume
            self._auto = (choice.engine, f"automatic → {describe_engine(choice.engine)}\n({choice.reason})")

        def failed(err):
            from napari_tumorseg.interactive.classic import ClassicEngine

            self._auto = (ClassicEngine(), f"automatic → {CLASSIC_TEXT}\n(the starter model failed: {sanitise(err)})")

        def finished():
            self._auto_worker = None
            if self._auto is not None and self._auto_volume != self._scan_is_volume():
                self._auto = None  # the scan changed kind while the choice loaded
                self._load_auto_engine()
                return
            self._show_mode()
            self.engine_ready.emit()
            if self._has_prompts():
                self._schedule()

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self._auto_worker = worker
        start_worker(worker)

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
        if getattr(engine, "path", None):
            label += f" ({Path(engine.path).name})"  # two checkpoints of one model stay apart
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
            worker_error_handler(f"cannot load {Path(path).name}")(err)

        worker.returned.connect(loaded)
        worker.errored.connect(failed)
        start_worker(worker)
        return worker

    def _pick_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Click-guided checkpoint", "", "Checkpoint (*.pt)")
        if path:
            self.load_checkpoint(path)

    def _refining(self):
        """What this scan's clicks refine: the session's prediction when it is the target, a
        labels layer the user ticked "Correct it" for (a loaded segmentation), or None."""
        p = self.session.prediction
        target = self.target()
        if target is None or self._scan is None:
            return None
        if p is not None and p.labels_layer is target and p.source is self._scan:
            return p
        if self.correct_box.isChecked() and tuple(target.data.shape) == tuple(spatial_shape(self._scan)):
            return _LoadedLabels(target)
        return None

    def _refined_region(self, refine) -> tuple[str, str] | None:
        """(region WT / TC / ET, label convention) the clicks correct when ``refine`` holds
        regions - the starter's oedema / core / enhancing map, or a loaded BraTS segmentation
        with a BraTS target: the Target's own region is the prior and Accept sets that region
        alone. None: a one-object map (its labels > 0 are the prior)."""
        from napari_tumorseg.interactive.targets import REGION_OF

        if refine is None:
            return None
        if getattr(refine.predictor, "output_kind", None) == "regions":
            return REGION_OF.get(self.region(), "WT"), "regionmap"  # "lesion": its whole tumour
        if isinstance(refine, _LoadedLabels) and self.region() in REGION_OF:
            return REGION_OF[self.region()], refine.convention()
        return None

    def _engine_input(self, engine, scan):
        """(image (c, z, y, x), spacing, channel names): what ``engine`` reads for ``scan``, the
        one rule for a click and for saying beforehand which model of a chain answers."""
        learned = getattr(engine, "learned", None)  # the volume model, classic where it cannot read the case
        if hasattr(engine, "prep"):
            vol = self.session.model_input(scan, engine)
        elif learned is not None:
            try:  # its sequences from the case's other open scans on the same grid
                vol = self.session.model_input(scan, learned)
            except TumorSegError:
                # The case lacks them: the chain's model for any subset reads what the case
                # has (by name), or the classic engine answers.
                fallback = getattr(engine, "fallback", None)
                vol = (self.session.case_input(scan, fallback.prep.channel_names) if fallback is not None
                       else self.session.volume_of(scan))
        else:
            vol = self.session.volume_of(scan)
        image = np.asarray(vol.data)
        image = image if vol.has_channels else image[None]
        names = list(vol.channel_names) if vol.has_channels else [vol.name]
        return image, tuple(vol.spacing)[-3:], names

    def _answers_this_scan(self, engine) -> str | None:
        """Which model of a chain will answer clicks on the chosen scan (None: one engine, or
        no scan yet): said before the first click, not only in the result line. The case's
        input is assembled here once per engine, scan and set of open scans, so this is also
        where a learned engine is handed it to prepare ahead of the first click (_warm_up)."""
        from napari_tumorseg.interactive.engines import engine_label

        chain = hasattr(engine, "for_case")
        if (not (chain or hasattr(engine, "prepare")) or self._scan is None
                or self._scan not in self.viewer.layers):
            return None
        # Assembling the case's input copies every scan: once per engine, scan and set of open
        # scans, not at each layer event (a click's preview and prompt layers come and go).
        key = (id(engine), id(self._scan), tuple(id(l) for l in self.session.image_layers()))
        if self._answers_key != key:
            by = None
            try:
                image, _, names = self._engine_input(engine, self._scan)
                if chain:
                    by = engine_label(engine.for_case(names, int(image.shape[0])), default="classic engine")
                self._warm_up(engine, image, names)
            except TumorSegError:
                pass
            self._answers_key, self._answers = key, by
        return self._answers

    def _warm_up(self, engine, image, names) -> None:
        """Prepare the scan for the engine that will answer it (its channels normalised, on
        the network's grid) in a worker, before the first click: that click paid 2.2 s where
        the next ones take 0.2-0.4 s (BraTS, four sequences). It runs as one of the dock's
        jobs, so a click made meanwhile starts when it ends, on the prepared case."""
        self._warm_args = (engine, image, names, self._scan)
        self._warm_timer.start(0)

    def _start_warm_up(self) -> None:
        args, self._warm_args = self._warm_args, None
        if args is None:
            return
        engine, image, names, scan = args
        if scan is not self._scan or scan is None or scan not in self.viewer.layers:
            return  # the scan went (a closing viewer removes every layer) or another was chosen
        if self._worker is not None or self.jobs.running:
            return  # a click's job is preparing the case right now
        from napari_tumorseg.interactive.engines import prepare_for_prompts

        self.jobs.start()
        worker = create_worker(prepare_for_prompts, engine, image, names,
                               _start_thread=False, _ignore_errors=True)
        worker.finished.connect(self._job_finished)
        self._worker = worker
        self.warm_ups += 1
        start_worker(worker)

    def _show_mode(self) -> None:
        eng = self.engine()
        text = eng[1] if eng is not None else self.engine_status.text() or "automatic: loading…"
        tip = []
        by = self._answers_this_scan(eng[0]) if eng is not None else None
        if by is not None:
            # One line for who answers this scan; the whole chain and why it was chosen stay
            # one hover away (four lines of it pushed the tools down the dock).
            tip.append(text)
            text = ("automatic · " if self.engine_combo.currentText() == AUTO else "") + f"this scan: {by}"
        target = self.target()
        p = self.session.prediction
        self.correct_box.setVisible(target is not None and not (p is not None and p.labels_layer is target))
        refine = self._refining()
        part = self._refined_region(refine)
        # On a region map Accept sets the Target's region: no value to pick.
        self.value_spin.setEnabled(part is None)
        self._show_value_name()
        self.value_spin.setToolTip("the label value Accept writes (one value per lesion or region)" if part is None
                                   else "refining a region map: Accept sets the region picked as Target")
        if refine is not None:
            what = "the labels" if isinstance(refine, _LoadedLabels) else "the prediction"
            text += f"\nrefining {what} '{target.name}'"
            if part is not None:
                text += f" ({self.region_combo.currentText() if part[0] != 'WT' else 'whole tumour'})"
        self.engine_status.setText(text)
        prec = getattr(eng[0], "precision", None) if eng is not None else None  # learned engines
        if prec is not None:
            tip.append(f"precision: {prec.describe()}")
        self.engine_status.setToolTip("\n".join(tip))

    # ================================================================== segmentation
    def _schedule(self) -> None:
        """Coalesce bursts of layer events (a drag, a stroke) into one re-segmentation."""
        self.jobs.supersede()  # a running job is stale from now on
        self._resegment_timer.start(0)

    def resegment(self) -> None:
        """Run the engine on the current prompts; a running job is superseded, not stacked."""
        self.jobs.supersede()
        if self.jobs.defer_if_busy():
            return  # starts as soon as the running job notices it is stale
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
            image, spacing, names = self._engine_input(engine, self._scan)
            region = self.region()
            prior = part = None
            if refine is not None:
                labels = np.asarray(refine.labels_layer.data)
                part = self._refined_region(refine)
                inside = labels > 0 if part is None else region_mask(labels, *part)
                prior = as_volume(inside, refine.labels_layer.ndim)
        except TumorSegError as err:
            notify_error(err)
            return
        gen = self.jobs.start()
        self.jobs_started += 1
        shown = self._shown
        previous = shown if shown is not None and shown[1].shape == image.shape[1:] else None
        worker = create_worker(_segment_job, engine, image, spacing, prompts, prior,
                               self.jobs.cancel_for(gen), previous, region, names,
                               _start_thread=False, _ignore_errors=True)
        refining = (refine is not None, part)
        worker.returned.connect(lambda res, gen=gen, refining=refining, prompts=prompts:
                                self._landed(gen, res, refining, prompts))
        worker.errored.connect(lambda err, gen=gen: self._failed(gen, err))
        worker.finished.connect(self._job_finished)
        self._worker = worker
        self.result_label.setText("segmenting…")
        start_worker(worker)

    def _landed(self, gen: int, result, refining: tuple, prompts=None) -> None:
        if not self.jobs.is_current(gen):
            return  # a newer prompt came in: this answer is for prompts no longer on screen
        mask, seconds, self.moved_threshold, self.answered_by = result
        if self._scan is None or mask.shape != as_volume(np.empty(spatial_shape(self._scan), bool),
                                                         len(spatial_shape(self._scan))).shape:
            return
        self.last_seconds = seconds
        self._set_preview(mask, refining)
        self._shown = (prompts, mask) if prompts is not None else None

    def _failed(self, gen: int, err: BaseException) -> None:
        if not self.jobs.is_current(gen):
            return  # a superseded job may stop by raising; that is not the user's problem
        self.result_label.setText("segmentation failed")
        worker_error_handler("segmentation failed")(err)

    def _job_finished(self) -> None:
        self._worker = None
        if self.jobs.finish():
            self.resegment()

    @property
    def preview_layer(self):
        return self._preview

    @property
    def busy(self) -> bool:
        return (self._worker is not None or self.jobs.pending or self._resegment_timer.isActive()
                or self._warm_timer.isActive())

    def _set_preview(self, mask: np.ndarray | None, refining: tuple = (False, None)) -> None:
        self.preview_mask = mask
        # (refines a prediction, the region of a region map it sets or None)
        self._preview_refines, self._preview_region = refining
        if mask is None:
            self._shown = None
            if self._preview is not None and self._preview in self.viewer.layers:
                self._preview.data = np.zeros_like(self._preview.data)
            self.result_label.setText("no preview")
        else:
            layer = self._ensure_preview()
            layer.data = from_volume(mask, layer.ndim).astype(np.uint8)
            n = int(mask.sum())
            spacing = self.session.volume_of(self._scan).spacing
            ml = n * float(np.prod(spacing)) / 1000.0
            secs = f"{self.last_seconds:.2f} s · " if self.last_seconds is not None else ""
            moved = (f" · edge at probability {self.moved_threshold:.2f} (moved by clicks near it)"
                     if self.moved_threshold is not None else "")
            by = f" · by {self.answered_by}" if getattr(self, "answered_by", None) else ""
            self.result_label.setText(f"{secs}{n:,} voxels · {ml:.2f} mL{by}{moved}")
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
                np.zeros(spatial_shape(scan), np.uint8), name=f"{scan.name} segmentation",
                metadata=dict(scan.metadata), **grid_kwargs(scan))
            self._refresh_layers()
            self.target_combo.setCurrentText(target.name)
        data = np.asarray(target.data)
        mask = from_volume(self.preview_mask, target.ndim)
        if mask.shape != data.shape:
            notify_error(TumorSegError(f"'{target.name}' {data.shape} is not on the scan's grid {mask.shape}"))
            return None
        if self._preview_region is not None:
            # One region of the map corrected: it is set to the preview, the others follow
            # only where WT ⊇ TC ⊇ ET makes them (brats.with_region).
            from napari_tumorseg.brats import REGION_NAMES, with_region

            region, convention = self._preview_region
            new, _ = with_region(data, region, mask, convention)
            changed = apply_edit(target, new)
            self.viewer.layers.selection.active = target
            full = ("whole tumour", "tumour core", "enhancing tumour")[REGION_NAMES.index(region)]
            show_info(f"accepted: the {full} of '{target.name}' is now {int(mask.sum()):,} voxels "
                      f"({changed:,} changed; the other regions kept where they nest)")
            self.clear()
            return target
        try:
            result = accept_into(data, mask, value, replace=self._preview_refines,
                                 overwrite_other=self.overwrite_other.isChecked())
        except TumorSegError as err:
            notify_error(TumorSegError(f"'{target.name}': {err}"))
            return None
        changed = apply_edit(target, result.labels)
        self.viewer.layers.selection.active = target  # so Ctrl+Z takes the Accept back
        name = _label_names(target).get(value)
        kept = (f"; {result.protected:,} voxels of other labels kept (tick 'Overwrite other labels' to "
                f"replace them)" if result.protected else "")
        show_info(f"accepted: {result.written:,} voxels as {value}{f' ({name})' if name else ''} "
                  f"in '{target.name}' ({changed:,} changed){kept}")
        self.clear()
        return target

    def clear(self) -> None:
        """Drop every prompt and the preview (the prompt layers stay, empty)."""
        self.jobs.supersede()
        if self.prompt_layers is not None:
            self.prompt_layers.clear()
        self._set_preview(None)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self._warm_timer.stop()
        self._warm_args = None
        self.jobs.supersede()
        self._bind_keys(False)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        super().closeEvent(event)
