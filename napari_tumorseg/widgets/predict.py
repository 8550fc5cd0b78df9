"""Dock widget: run a checkpoint on an image layer, show probabilities and editable labels.

The model runs once; the probability map is cached, and the threshold slider rebuilds
the labels from the cache (no second model call). Slices appear as their batch
finishes. A ConvNeXt V2 checkpoint shows the tumour type of the viewed slice and case.
"""

from __future__ import annotations

import threading
import time

import napari

import numpy as np
from napari.utils import progress
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.user_edits import merge_derived, result_problem
from napari_tumorseg.per_viewer import real_viewer
from napari_tumorseg.widgets._click_prompts import spatial_shape
from napari_tumorseg.widgets._common import (
    PathPicker,
    dismiss_notifications_before,
    guarded,
    hint_label,
    notify_error,
    scroll_body,
    set_choices,
    show_warning,
    start_worker,
    thread_worker,
    worker_error_handler,
)
from napari_tumorseg.widgets._precision import PrecisionCombo
from napari_tumorseg.widgets._session import Prediction, session_for


CLEANUP_TIPS = {
    "regions": ("A connected region of predicted oedema that holds no core is not a tumour a "
                "radiologist outlines (most false positives on unseen scans). Applied once the whole "
                "volume is predicted; voxels you edited stay yours."),
    "largest": ("This model's training found, on its validation cases, that keeping only the largest "
                "connected component raises Dice (small false positives apart from the tumour). Untick "
                "for multifocal disease. Applied once the whole volume is predicted; voxels you edited "
                "stay yours."),
}
FROM_CHECKPOINT = "checkpoint (from training)"
#: The shipped automatic model (inference/starter.py): the default when the install has it.
STARTER = "starter: whole tumour, core, enhancing"
NO_MODEL_HINT = ("Load a checkpoint (.pt from the Train dock), or use Segment by clicks "
                 "without a model.")
STARTER_HINT = ("Ready: Predict runs the shipped research starter (BraTS whole tumour, core and "
                "enhancing from FLAIR + T1c, open as channels). Check every result; or load your own "
                "checkpoint.")
#: Probabilities below this are not drawn: the scan shows through untinted.
PROBABILITY_FLOOR = 0.05
#: RGBA (0-1) of a predicted binary tumour, apart from the cyan outline of a ground truth.
PREDICTION_COLOR = (1.0, 0.35, 0.1, 1.0)


def probability_colormap(floor: float = PROBABILITY_FLOOR, opaque_at: float = 0.5):
    """inferno from ``floor`` to 1: fully transparent below ``floor``, then fading in until
    ``opaque_at``, so a model's low background probabilities do not veil the scan."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    inferno = ensure_colormap("inferno")
    values = np.linspace(floor, 1.0, 20)
    controls = np.concatenate([[0.0, floor], values[1:]])
    colors = np.concatenate([np.zeros((2, 4)), inferno.map(values[1:])])
    colors[2:, 3] = np.clip((values[1:] - floor) / (opaque_at - floor), 0.0, 1.0)
    return Colormap(colors=colors, controls=controls, name=f"tumorseg probability (> {floor:g})")


def label_layer_name(image_name: str) -> str:
    return f"{image_name} tumour"


def prob_layer_name(image_name: str) -> str:
    return f"{image_name} probability"


class PredictWidget(QWidget):
    #: emitted on the GUI thread when a prediction run ends (done or cancelled)
    prediction_finished = Signal()

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)  # the viewer itself, not the proxy napari hands a dock
        self.session = session_for(napari_viewer)
        self.model_calls = 0  # forward runs started (tests: the slider must not add any)
        self._worker = None
        self._cancel = threading.Event()
        self.case_result = None

        # -- model ----------------------------------------------------------------------
        from napari_tumorseg.models import list_models

        from napari_tumorseg.inference.starter import LABEL, starter_path

        self.source_combo = QComboBox()
        if starter_path() is not None:
            self.source_combo.addItem(STARTER)
        self.source_combo.addItem(FROM_CHECKPOINT)
        self.source_combo.addItems(list_models())
        self.source_combo.setToolTip(f"{STARTER}: the {LABEL} shipped with the plugin; a training "
                                     "checkpoint; or a registry model (paper configuration) with a weights file")
        self.ckpt_picker = PathPicker("checkpoint (.pt) from training", "Checkpoint (*.pt)", folder=False)
        # Choosing a file means that file: the combo leaves the shipped model.
        self.ckpt_picker.edit.textChanged.connect(self._weights_chosen)
        self.load_button = QPushButton("Load model")
        self.load_button.clicked.connect(self.load_model)
        self.model_label = QLabel("no model loaded")
        self.model_label.setWordWrap(True)
        self.hint = hint_label(NO_MODEL_HINT)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.precision = PrecisionCombo()
        self.device.currentTextChanged.connect(self.precision.refresh)
        self.precision.currentIndexChanged.connect(self._precision_changed)

        # -- input ----------------------------------------------------------------------
        self.image_layer = QComboBox()
        self.range_current = QRadioButton("Current slice")
        self.range_span = QRadioButton("Slices")
        self.range_all = QRadioButton("Whole volume")
        self.range_all.setChecked(True)
        group = QButtonGroup(self)
        for b in (self.range_current, self.range_span, self.range_all):
            group.addButton(b)
        self.z_from = QSpinBox()
        self.z_to = QSpinBox()
        for s in (self.z_from, self.z_to):
            s.setRange(0, 100000)
        self.batch = QSpinBox()
        self.batch.setRange(1, 256)
        self.batch.setValue(8)
        self.overlap = QDoubleSpinBox()
        self.overlap.setRange(0.0, 0.95)
        self.overlap.setSingleStep(0.05)
        self.overlap.setValue(0.8)
        self.overlap.setToolTip("sliding-window overlap for 3D models (GLIMS paper: 0.8)")

        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(self.predict)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)

        # -- output ---------------------------------------------------------------------
        self.threshold = QSlider(Qt.Horizontal)
        self.threshold.setRange(1, 99)
        self.threshold.setValue(50)
        self.threshold_label = QLabel("0.50")
        self.threshold.valueChanged.connect(self._threshold_changed)
        self.clean_box = QCheckBox("Drop oedema without a core")
        self.clean_box.setChecked(True)
        self.clean_box.setToolTip(CLEANUP_TIPS["regions"])
        self.clean_box.setVisible(False)
        self.clean_box.toggled.connect(self._clean_toggled)
        self.dropped_components = 0
        self.volume_label = QLabel("")
        # Wrapped: the result line grows (regions' volumes, kept edits, dropped components)
        # and an unwrapped label widened the dock past a 1366-px screen.
        self.volume_label.setWordWrap(True)
        self.volume_label.setToolTip("volume of the labels at this threshold, from the cached probabilities")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.class_label = QLabel("")
        self.class_label.setWordWrap(True)
        self.class_label.setTextInteractionFlags(Qt.TextSelectableByMouse)

        model_box = QGroupBox("Model")
        mf = QFormLayout(model_box)
        mf.addRow("Model", self.source_combo)
        mf.addRow("Weights", self.ckpt_picker)
        row = QHBoxLayout()
        row.addWidget(QLabel("Device"))
        row.addWidget(self.device)
        row.addWidget(self.load_button)
        mf.addRow(row)
        mf.addRow("Precision", self.precision)
        mf.addRow(self.model_label)
        in_box = QGroupBox("Input")
        inf = QFormLayout(in_box)
        inf.addRow("Image layer", self.image_layer)
        ranges = QHBoxLayout()
        for b in (self.range_current, self.range_span, self.range_all):
            ranges.addWidget(b)
        inf.addRow(ranges)
        span = QHBoxLayout()
        span.addWidget(QLabel("from"))
        span.addWidget(self.z_from)
        span.addWidget(QLabel("to"))
        span.addWidget(self.z_to)
        inf.addRow(span)
        # The slice numbers mean something only for "Slices"; they span the chosen scan.
        self.range_span.toggled.connect(self._span_toggled)
        self._span_toggled(self.range_span.isChecked())
        self.image_layer.currentTextChanged.connect(self._fit_span)
        inf.addRow("Batch (slices)", self.batch)
        inf.addRow("3D overlap", self.overlap)
        out_box = QGroupBox("Result")
        of = QFormLayout(out_box)
        thr = QHBoxLayout()
        thr.addWidget(self.threshold, 1)
        thr.addWidget(self.threshold_label)
        of.addRow("Threshold", thr)
        of.addRow(self.clean_box)
        of.addRow("Result", self.volume_label)
        of.addRow(self.class_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.predict_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.hint)
        layout.addWidget(model_box)
        layout.addWidget(in_box)
        layout.addLayout(buttons)
        layout.addWidget(out_box)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.dims.events.current_step.connect(self._update_slice_class)
        self.session.events.predictor.connect(self._show_hint)
        self.session.events.case.connect(self._new_case)
        self.source_combo.currentTextChanged.connect(self._show_hint)
        self._refresh_layers()
        self._show_hint()

    def _show_hint(self, *_):
        self.hint.setVisible(self.predictor is None)
        self.hint.setText(STARTER_HINT if self.source_combo.currentText() == STARTER else NO_MODEL_HINT)

    def _weights_chosen(self, text: str) -> None:
        if text.strip() and self.source_combo.currentText() == STARTER:
            self.source_combo.setCurrentText(FROM_CHECKPOINT)

    # The model and the probability cache live in the viewer's session, shared by every dock.
    @property
    def predictor(self):
        return self.session.predictor

    @property
    def probabilities(self) -> np.ndarray | None:
        p = self.session.prediction
        return None if p is None else p.probabilities

    # -- model --------------------------------------------------------------------------
    @guarded("loading the model failed")
    def load_model(self):
        from napari_tumorseg.inference.starter import starter_path

        starter = self.source_combo.currentText() == STARTER
        path = starter_path() if starter else self.ckpt_picker.path()
        if path is None:
            notify_error(TumorSegError("choose a checkpoint or weights file — weights are never downloaded"))
            return None
        try:
            from napari_tumorseg.inference.predict import Predictor

            source, device = self.source_combo.currentText(), self.device.currentText()
            precision = self.precision.choice()
            if source in (FROM_CHECKPOINT, STARTER):
                predictor = Predictor.from_checkpoint(path, device=device, precision=precision)
            else:
                predictor = Predictor.from_registry(source, weights=path, device=device, precision=precision)
            self.session.set_predictor(predictor, path if source in (FROM_CHECKPOINT, STARTER) else None)
        except TumorSegError as err:
            self.session.set_predictor(None)  # never predict with a model other than the one asked for
            self.model_label.setText("no model loaded")
            notify_error(err)
            return None
        self._model_prefix = "research starter, not a medical device: " if starter else ""
        self.model_label.setText(self._model_prefix + self.predictor.describe())
        is_3d = self.predictor.dims == 3
        self.overlap.setEnabled(is_3d)
        self.threshold.setEnabled(not self.predictor.is_classifier)
        cleanup = self._cleanup()
        self.clean_box.setVisible(cleanup != "")
        if cleanup:
            self.clean_box.setText("Drop oedema without a core" if self.predictor.output_kind == "regions"
                                   else "Keep the largest component (chosen on validation)")
            self.clean_box.setToolTip(CLEANUP_TIPS["regions" if self.predictor.output_kind == "regions"
                                                   else "largest"])
        return self.predictor

    def _cleanup(self, predictor=None) -> str:
        """What the model's output kind drops from a whole map ("" if nothing)."""
        predictor = predictor or self.predictor
        if predictor is None or predictor.is_classifier:
            return ""
        return predictor.cleanup

    @guarded("cleaning the result failed")
    def _clean_toggled(self, _checked: bool) -> None:
        if self._worker is None:
            self._refresh_outputs(None)
            self._check_result(None, notify=False)

    def _precision_changed(self, *_) -> None:
        """A new choice applies to the loaded model from its next prediction."""
        self.precision.refresh(self.device.currentText())
        if self.predictor is not None:
            self.predictor.set_precision(self.precision.choice())
            self.model_label.setText(getattr(self, "_model_prefix", "") + self.predictor.describe())

    def _new_case(self, *_):
        self.session.select_newest_scan(self.image_layer, self._refresh_layers)

    def _refresh_layers(self, *_):
        set_choices(self.image_layer, [l.name for l in self.session.image_layers()])  # signals blocked
        self._fit_span(self.image_layer.currentText())

    def _source(self):
        """The chosen layer, the model's input for it ((c, z, y, x), the case's channels) and
        the name its outputs take."""
        name = self.image_layer.currentText()
        if not name or name not in self.viewer.layers:
            raise TumorSegError("open an image to predict on")
        layer = self.viewer.layers[name]
        vol = self.session.model_input(layer, self.predictor)
        data = np.asarray(vol.data)
        # The outputs are named for what the model read: the case when it read several of its
        # scans ("BraTS2021_00006 tumour", not "..._t2 tumour" after the scan last selected).
        out_name = vol.name if vol.has_channels and data.shape[0] > 1 else layer.name
        return layer, (data if vol.has_channels else data[None]), out_name

    def _span_toggled(self, on: bool) -> None:
        for s in (self.z_from, self.z_to):
            s.setEnabled(on)
        if on and self.z_from.value() == self.z_to.value() == 0:
            # From a blank 0-0 to the slice on screen: what "Slices" is usually chosen for.
            z = int(self.viewer.dims.current_step[0]) if self.viewer.dims.ndim >= 3 else 0
            self.z_from.setValue(z)
            self.z_to.setValue(z)

    def _fit_span(self, name: str) -> None:
        """Slice numbers within the chosen scan (0 to its last axial slice)."""
        layer = next((l for l in self.session.image_layers() if l.name == name), None)
        if layer is None:
            return
        shape = spatial_shape(layer)
        n_z = int(shape[0]) if len(shape) == 3 else 1
        for s in (self.z_from, self.z_to):
            s.setMaximum(max(n_z - 1, 0))

    def _slices(self, n_z: int):
        if self.range_current.isChecked():
            return [int(self.viewer.dims.current_step[0])] if n_z > 1 else [0]
        if self.range_span.isChecked():
            lo, hi = sorted((self.z_from.value(), self.z_to.value()))
            if lo >= n_z:
                raise TumorSegError(f"slice {lo} is outside the volume (0-{n_z - 1})")
            return list(range(lo, min(hi, n_z - 1) + 1))
        return None

    # -- prediction ---------------------------------------------------------------------
    @guarded("prediction failed")
    def predict(self):
        if self._worker is not None:
            notify_error(TumorSegError("a prediction is already running"))
            return None
        if self.predictor is None and self.load_model() is None:
            return None
        try:
            layer, data, out_name = self._source()
            spatial = data.shape[-3:]
            slices = self._slices(spatial[0])
            # Refused here, before any layer is made: a blank map beside the message would
            # still read as "no tumour".
            from napari_tumorseg.input_checks import require_finite, source_name

            require_finite(data, source_name(self.session.volume_of(layer)))
        except TumorSegError as err:
            notify_error(err)
            return None
        if self.predictor.is_classifier:
            return self._classify(layer, data, slices)
        from napari_tumorseg.inference.predict import predict_volume

        predictor = self.predictor
        started = time.monotonic()
        self._cancel.clear()
        self.model_calls += 1
        batch, overlap, cancel = self.batch.value(), self.overlap.value(), self._cancel.is_set
        vol = data
        names = predictor.channel_names  # the map's leading channels (regions, classes), or None
        shape = (len(names), *spatial) if names else tuple(spatial)
        # Predicting more slices of the same scan adds to the map; a new scan starts afresh.
        from napari_tumorseg.inference.predict import prediction_reuse

        old = self.session.prediction
        reuse = prediction_reuse(old.source if old else None, old.probabilities.shape if old else (),
                                 old.predictor if old else None, layer, shape, predictor)
        same = reuse == "extend"
        if not same:
            keep = old if reuse == "replace" else None
            self.session.set_prediction(Prediction(
                source=layer, predictor=predictor, probabilities=np.zeros(shape, np.float32),
                prob_layer=keep.prob_layer if keep else None, labels_layer=keep.labels_layer if keep else None))
        self._ensure_output_layers(layer, keep_labels=same, name=out_name)
        pbar = progress(total=0, desc=f"Predicting {layer.name}")

        @thread_worker
        def work():
            yield from predict_volume(predictor, vol, slices=slices, batch_size=batch, overlap=overlap,
                                      cancel=cancel)

        def on_event(ev):
            if ev.kind == "progress" and ev.planes is not None and ev.slices:
                self.session.prediction.probabilities[..., ev.slices, :, :] = ev.planes
                self._refresh_outputs(ev.slices)
            elif ev.kind in ("done", "cancelled"):
                if ev.probabilities is not None and ev.slices:
                    pred = self.session.prediction
                    pred.probabilities[..., ev.slices, :, :] = ev.probabilities[..., ev.slices, :, :]
                    pred.predicted_z.update(int(z) for z in ev.slices)
                    self._refresh_outputs(ev.slices)  # whole and cleaned once every slice is in
                self.status.setText(
                    f"{ev.kind}: {len(ev.slices)} slice(s) in {ev.elapsed_s:.1f} s" if ev.kind == "done"
                    else f"cancelled; {len(ev.slices)} slice(s) kept"
                )
                self._check_result(ev.slices, notify=True)
                if ev.kind == "done":
                    dismiss_notifications_before(started, self)
            # Last: napari's progress bar may process pending events, the run's end among them.
            if ev.total and pbar.total != ev.total:
                pbar.total = ev.total
            pbar.update(ev.done - pbar.n)

        worker = self._run(work(), on_event)
        worker.finished.connect(pbar.close)
        return worker

    def _run(self, worker, on_event):
        worker.yielded.connect(on_event)
        worker.errored.connect(worker_error_handler("prediction failed"))
        worker.finished.connect(self._finished)
        self.predict_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._worker = worker
        start_worker(worker)
        return worker

    def cancel(self) -> None:
        self._cancel.set()

    def _finished(self) -> None:
        self._worker = None
        self.predict_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.prediction_finished.emit()

    def _ensure_output_layers(self, layer, keep_labels: bool = False, name: str | None = None) -> None:
        name = name or layer.name
        pred = self.session.prediction
        spatial = pred.probabilities.shape[-3:]
        scale = tuple(layer.scale[-3:]) if layer.ndim >= 3 else (1.0, *layer.scale[-2:])
        translate = tuple(layer.translate[-3:]) if layer.ndim >= 3 else (0.0, *layer.translate[-2:])
        meta = {k: v for k, v in layer.metadata.items()}
        prob_view = pred.probabilities[0] if pred.probabilities.ndim == 4 else pred.probabilities
        if layer.ndim == 2:
            prob_view = prob_view[0]
            scale, translate = scale[1:], translate[1:]
        # An oblique scan's residual rotation (io.orientation) travels too, or the outputs
        # would sit a few degrees off the scan they were computed on.
        n = len(scale)
        full = np.asarray(layer.affine.affine_matrix, dtype=float)
        affine = np.eye(n + 1)
        affine[:n, :n] = full[-n - 1:-1, -n - 1:-1]
        affine[:n, n] = full[-n - 1:-1, -1]
        if pred.prob_layer is not None and pred.prob_layer in self.viewer.layers:
            pred.prob_layer.data = prob_view
        else:
            pred.prob_layer = self.viewer.add_image(
                prob_view, name=prob_layer_name(name), colormap=probability_colormap(), opacity=0.5,
                blending="translucent", contrast_limits=(0.0, 1.0), scale=scale, translate=translate,
                affine=affine, metadata={**meta, "tumorseg_output": "probability"},
            )
        labels = np.zeros(spatial if layer.ndim >= 3 else spatial[1:], np.uint8)
        if pred.labels_layer is not None and pred.labels_layer in self.viewer.layers:
            edited = self.session.edited_mask(pred.labels_layer)
            if not keep_labels and np.shape(pred.labels_layer.data) == labels.shape:
                # A re-run starts the derived voxels afresh; what the user edited stays.
                merged, _ = merge_derived(np.asarray(pred.labels_layer.data), labels, edited)
                pred.labels_layer.data[...] = merged
                pred.labels_layer.refresh()
            elif not keep_labels and edited is None:
                pred.labels_layer.data = labels
            elif not keep_labels:  # another grid, and edits on the old one: a new layer keeps both
                pred.labels_layer = None
        if pred.labels_layer is None or pred.labels_layer not in self.viewer.layers:
            from napari.utils.colormaps import DirectLabelColormap

            kwargs = {}
            colors = self.predictor.label_colors()
            if colors:
                kwargs["colormap"] = DirectLabelColormap(
                    color_dict={None: PREDICTION_COLOR, 0: (0.0, 0.0, 0.0, 0.0), **colors})
            elif pred.probabilities.ndim == 3:
                kwargs["colormap"] = DirectLabelColormap(
                    color_dict={None: PREDICTION_COLOR, 0: (0.0, 0.0, 0.0, 0.0)})
            pred.labels_layer = self.viewer.add_labels(
                labels, name=label_layer_name(name), opacity=0.6, scale=scale, translate=translate,
                affine=affine, metadata={**meta, "label_names": self.label_names()}, **kwargs)
        self._references_on_top()
        self.session.events.prediction()

    def _references_on_top(self) -> None:
        """Outlined masks (a ground truth) stay above the filled prediction and its map."""
        layers = self.viewer.layers
        for layer in [l for l in layers if isinstance(l, napari.layers.Labels) and getattr(l, "contour", 0) > 0]:
            layers.move(layers.index(layer), len(layers))

    def label_names(self) -> dict[int, str]:
        if self.predictor is None:
            return {}
        return {int(k): v for k, v in self.predictor.label_names().items()}

    def _refresh_outputs(self, slices) -> None:
        pred = self.session.prediction
        if pred is None:
            return
        from napari_tumorseg.inference.predict import probabilities_to_labels

        t = self.threshold.value() / 100.0
        pred.threshold = t
        if pred.prob_layer is not None:
            pred.prob_layer.refresh()
        labels_layer = pred.labels_layer
        if labels_layer is None:
            return
        kind = pred.predictor.output_kind
        cleans = self._cleans(pred)
        if cleans:
            slices = None  # a whole-volume rule: never a slab's raw threshold over a cleaned map
        # Derived voxels follow the threshold; voxels the user edited stay theirs. Written
        # without history: moving the slider back restores the derived ones, and the user's
        # undo stack keeps only what the user did.
        edited = self.session.edited_mask(labels_layer)
        current = np.asarray(labels_layer.data)
        if labels_layer.ndim >= 3:
            probs = pred.probabilities if slices is None else pred.probabilities[..., slices, :, :]
            region = None if slices is None else (slices, slice(None), slice(None))
            derived = probabilities_to_labels(probs, t, kind)
        else:
            region, derived = None, probabilities_to_labels(pred.probabilities, t, kind)[0]
        if region is not None and isinstance(slices, (list, tuple, np.ndarray)):
            region = (np.asarray(slices), slice(None), slice(None))
        self.dropped_components = 0
        if cleans:
            derived, self.dropped_components = pred.predictor.clean(derived)
        merged, kept = merge_derived(current, derived, edited, region)
        if slices is None or labels_layer.ndim < 3:
            labels_layer.data[...] = merged
        else:
            labels_layer.data[region] = merged[region]
        labels_layer.refresh()
        self.kept_edits = kept

    def _cleans(self, pred) -> bool:
        """Whether the labels of ``pred`` get its kind's cleanup now: asked for, and whole."""
        return self.clean_box.isChecked() and self._cleanup(pred.predictor) != "" and pred.complete

    @guarded("threshold failed")
    def _threshold_changed(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        if self._worker is None:
            self._refresh_outputs(None)  # from the cache: no model call
            self._check_result(None, notify=False)

    def _check_result(self, slices, notify: bool) -> str:
        """Show the result's size; say so when it is empty or the whole volume.

        Counted on the labels the threshold just made (one pass over a uint8 array, a few ms
        for a 155×240² volume), so the figure follows the slider as it moves.
        """
        pred = self.session.prediction
        if pred is None or pred.labels_layer is None or pred.labels_layer not in self.viewer.layers:
            self.volume_label.setText("")
            return ""
        labels = np.asarray(pred.labels_layer.data)
        n = int(np.count_nonzero(labels))
        sp = [float(s) for s in pred.labels_layer.scale]
        if labels.ndim >= 3 and labels.shape[-3] > 1:
            size = f"{n * sp[-3] * sp[-2] * sp[-1] / 1000.0:.2f} mL"
            if getattr(pred.predictor, "output_kind", None) == "regions":
                # What a radiologist reads off a BraTS model: each region's volume.
                from napari_tumorseg import brats
                from napari_tumorseg.measurements import region_volumes

                vols = region_volumes(labels, sp[-3:], brats.CONVENTIONS["regionmap"])
                size = " · ".join(f"{r} {vols[r]['volume_ml']:.1f}" for r in ("WT", "TC", "ET")) + " mL"
        else:
            size = f"{n * sp[-2] * sp[-1] / 100.0:.2f} cm²"
        t = self.threshold.value() / 100.0
        if slices is None:
            slices = getattr(self, "_predicted_slices", None)
        else:
            self._predicted_slices = list(slices)
        plane = int(np.prod(labels.shape[-2:]))
        predicted = plane * (len(slices) if slices is not None and labels.ndim >= 3 else
                             (labels.shape[-3] if labels.ndim >= 3 else 1))
        top = float(np.max(pred.probabilities)) if pred.probabilities.size else 0.0
        problem = result_problem(n, predicted, top, t)
        kept = getattr(self, "kept_edits", 0)
        dropped = self.dropped_components
        text = (f"{size} ({n} voxels)" + (f" · {kept} edited voxels kept" if kept else "")
                + (f" · {dropped} component(s) dropped: {self._cleanup(pred.predictor)}" if dropped else "")
                + (f" — {problem}" if problem else ""))
        self.volume_label.setText(text)
        if problem and notify:
            show_warning(f"{pred.labels_layer.name}: {problem}")
        return text

    # -- classifier ---------------------------------------------------------------------
    def _classify(self, layer, data, slices):
        from napari_tumorseg.inference.predict import aggregate_case, iter_classify_slices

        predictor = self.predictor
        vol = data
        self.model_calls += 1
        self._cancel.clear()
        cancel = self._cancel.is_set

        @thread_worker
        def work():
            yield from iter_classify_slices(predictor, vol, slices, batch_size=self.batch.value(), cancel=cancel)

        def on_event(ev):
            if ev.kind in ("done", "cancelled") and ev.probabilities is not None:
                self.slice_class_probs = ev.probabilities
                probs = ev.probabilities[ev.slices]
                self.case_result = aggregate_case(probs, predictor.class_names, ev.slices)
                self._update_slice_class()

        return self._run(work(), on_event)

    def _update_slice_class(self, *_):
        if self.case_result is None or self.predictor is None:
            return
        z = int(self.viewer.dims.current_step[0])
        names = self.predictor.class_names
        text = f"Case: {self.case_result.text()}"
        probs = getattr(self, "slice_class_probs", None)
        if probs is not None and z < len(probs) and np.all(np.isfinite(probs[z])):
            k = int(np.argmax(probs[z]))
            text = f"Slice {z}: {names[k]} ({probs[z][k]:.0%})\n" + text
        self.class_label.setText(text)
