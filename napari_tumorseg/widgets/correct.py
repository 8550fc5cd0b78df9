"""Dock widget: correct a labels layer, measure it, export it, and feed it back to training.

Every edit goes through the layer's own history (``data_setitem`` inside
``block_history``), so one Ctrl+Z undoes one of our edits exactly like a brush stroke,
and brush, eraser, fill and our tools interleave in one undo stack.
"""

from __future__ import annotations

from pathlib import Path

import napari
from napari.utils.colormaps.standardize_color import transform_color
import numpy as np
from qtpy.QtCore import QEvent, QObject
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.volume import volume_from_layer
from napari_tumorseg.per_viewer import real_viewer
from napari_tumorseg.widgets._common import PathPicker, guarded, notify_error, scroll_body, show_info, show_slice
from napari_tumorseg.widgets._session import session_for

EXPORT_FORMATS = {
    "NIfTI (.nii.gz)": "nifti",
    "NRRD / 3D Slicer (.seg.nrrd, .nrrd)": "nrrd",
    "MetaImage (.mha, .mhd)": "mha",
    "TIFF stack (.tif)": "tiff",
    "TIFF per slice (folder)": "tiff-slices",
    "COCO JSON (.json)": "coco",
    "DICOM-SEG (.dcm)": "dicom-seg",
}


def apply_edit(layer, new: np.ndarray) -> int:
    """Write ``new`` into a Labels layer as ONE undoable step; returns voxels changed."""
    old = np.asarray(layer.data)
    if new.shape != old.shape:
        raise TumorSegError(f"edit shape {new.shape} differs from the layer's {old.shape}")
    changed = np.nonzero(new != old)
    if changed[0].size == 0:
        return 0
    values = new[changed]
    with layer.block_history():
        for v in np.unique(values):
            sel = values == v
            layer.data_setitem(tuple(ix[sel] for ix in changed), int(v), refresh=False)
    layer.refresh()
    return int(changed[0].size)


class CorrectWidget(QWidget):
    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)  # the viewer itself, not the proxy napari hands a dock
        self.session = session_for(napari_viewer)
        self._click_layer = None
        self.last_report = ""
        self.last_measure: dict = {}
        self.diameter_layer = None

        self.labels_combo = QComboBox()
        self.image_combo = QComboBox()
        self.gt_combo = QComboBox()
        # Until the user picks a ground truth, an opened reference mask is offered as one.
        self._gt_chosen = False
        self.gt_combo.activated.connect(self._gt_picked)

        # -- editing ----------------------------------------------------------------------
        self.click_keep = QCheckBox("Click to keep a component")
        self.click_keep.setToolTip("click a tumour: only its connected component stays (one undo step)")
        self.click_keep.toggled.connect(self._toggle_click_keep)
        self.click_remove = QCheckBox("Click to remove a component")
        self.click_remove.setToolTip("click a false positive: its connected component goes (one undo step)")
        self.click_remove.toggled.connect(self._toggle_click_remove)
        self.slice_only = QCheckBox("This slice only (else 3D)")
        self.fill_button = QPushButton("Fill holes")
        self.fill_button.clicked.connect(self.fill_holes)
        self.island_mm3 = QDoubleSpinBox()
        self.island_mm3.setRange(0.0, 1e7)
        self.island_mm3.setValue(50.0)
        self.island_mm3.setSuffix(" mm³")
        self.islands_button = QPushButton("Remove islands smaller than")
        self.islands_button.clicked.connect(self.remove_islands)
        self.margin_mm = QDoubleSpinBox()
        self.margin_mm.setRange(-30.0, 30.0)
        self.margin_mm.setSingleStep(0.5)
        self.margin_mm.setValue(1.0)
        self.margin_mm.setSuffix(" mm")
        self.labels_combo.currentTextChanged.connect(self._margin_step)
        self.margin_button = QPushButton("Move border by")
        tip = ("the whole segmentation's outer border, out (positive) or in (negative), in mm of the "
               "scan's own spacing, as 3D Slicer's Margin: for a border drawn too tight or too wide all "
               "round (one undo step). Growing fills background alone, with the nearest label")
        self.margin_button.setToolTip(tip)
        self.margin_mm.setToolTip(tip)
        self.margin_button.clicked.connect(self.move_border)
        self.margin_label = QSpinBox()
        self.margin_label.setRange(0, 65535)
        self.margin_label.setPrefix("label ")
        self.margin_label.setSpecialValueText("all labels")  # 0: the whole segmentation's border
        self.margin_label.setToolTip("whose border moves: all labels (the segmentation's outer border) or one "
                                     "label value, e.g. an enhancing rim drawn too thin (3 in a predicted region map)")
        self.margin_over = QCheckBox("over other labels")
        self.margin_over.setToolTip("a label growing takes the other labels' voxels too (else background alone)")
        self.undo_button = QPushButton("Undo")
        self.undo_button.clicked.connect(self.undo)

        # -- measuring --------------------------------------------------------------------
        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(self.measure)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("copy the table (tab-separated) to paste into a report or a spreadsheet")
        self.copy_button.clicked.connect(lambda: QApplication.clipboard().setText(self.table_text()))
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Measure", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(120)
        # Ctrl+C on the table copies all of it, as the Copy button does (the view itself
        # would copy the current cell alone).
        self._copy_filter = _CopyKey(self.table, lambda: QApplication.clipboard().setText(self.table_text()))

        # -- export -----------------------------------------------------------------------
        self.format_combo = QComboBox()
        self.format_combo.addItems(list(EXPORT_FORMATS))
        self.export_picker = PathPicker("output file or folder", save=True)
        self.overwrite = QCheckBox("Overwrite existing files")
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(self.export)

        # -- human in the loop ------------------------------------------------------------
        self.dataset_picker = PathPicker("training-set folder (one NIfTI folder per corrected case)", file=False)
        self.add_button = QPushButton("Add to training set")
        self.add_button.clicked.connect(self.add_to_training_set)
        self.finetune_button = QPushButton("Fine-tune on corrections")
        self.finetune_button.clicked.connect(self.fine_tune)

        layers_box = QGroupBox("Layers")
        lf = QFormLayout(layers_box)
        lf.addRow("Labels to edit", self.labels_combo)
        lf.addRow("Scan", self.image_combo)
        lf.addRow("Ground truth", self.gt_combo)
        edit_box = QGroupBox("Correct")
        ef = QVBoxLayout(edit_box)
        hint = QLabel("napari's brush, eraser and fill work too; Ctrl+Z / Undo steps back through all edits")
        hint.setWordWrap(True)
        ef.addWidget(hint)
        ef.addWidget(self.click_keep)
        ef.addWidget(self.click_remove)
        ef.addWidget(self.slice_only)
        row = QHBoxLayout()
        row.addWidget(self.fill_button)
        row.addWidget(self.undo_button)
        ef.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.islands_button)
        row.addWidget(self.island_mm3)
        ef.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.margin_button)
        row.addWidget(self.margin_mm)
        ef.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("of"))
        row.addWidget(self.margin_label, 1)
        row.addWidget(self.margin_over)
        ef.addLayout(row)
        m_box = QGroupBox("Measure")
        mf = QVBoxLayout(m_box)
        row = QHBoxLayout()
        row.addWidget(self.measure_button)
        row.addWidget(self.copy_button)
        mf.addLayout(row)
        mf.addWidget(self.table)
        x_box = QGroupBox("Export")
        xf = QFormLayout(x_box)
        xf.addRow("Format", self.format_combo)
        xf.addRow("To", self.export_picker)
        xf.addRow(self.overwrite)
        xf.addRow(self.export_button)
        h_box = QGroupBox("Human in the loop")
        hf = QFormLayout(h_box)
        hf.addRow("Dataset", self.dataset_picker)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.finetune_button)
        hf.addRow(row)
        layout = QVBoxLayout(scroll_body(self))
        for w in (layers_box, edit_box, m_box, x_box, h_box):
            layout.addWidget(w)
        layout.addStretch(1)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.session.events.prediction.connect(self._follow_prediction)
        self.session.events.case.connect(self._case_changed)
        self.viewer.dims.events.current_step.connect(self._diameter_visibility)
        self._refresh_layers()

    def _follow_prediction(self, *_):
        """A new prediction becomes the layer to edit, its scan the scan."""
        self._refresh_layers()
        p = self.session.prediction
        if p is not None and p.labels_layer is not None and p.labels_layer in self.viewer.layers:
            self.labels_combo.setCurrentText(p.labels_layer.name)
            if p.source in self.viewer.layers:
                self.image_combo.setCurrentText(p.source.name)
        self._offer_reference()

    def _case_changed(self, *_):
        """Another study is on screen: the last one's figures and lines go."""
        self._gt_chosen = False  # its reference mask may be offered as the ground truth
        self.table.setRowCount(0)
        self.last_report, self.last_measure = "", {}
        if self.diameter_layer is not None and self.diameter_layer in self.viewer.layers:
            self.diameter_layer.data = []
        self._refresh_layers()

    # -- layers -------------------------------------------------------------------------
    def _refresh_layers(self, *_):
        labels = [l.name for l in self.viewer.layers if isinstance(l, napari.layers.Labels)]
        images = [l.name for l in self.session.image_layers()]
        for combo, names, blank in ((self.labels_combo, labels, False), (self.image_combo, images, False),
                                    (self.gt_combo, labels, True)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems((["(none)"] if blank else []) + names)
            if current in names or (blank and current == "(none)"):
                combo.setCurrentText(current)
            elif not blank and names:
                # Prefer the session's predicted layer as the one to edit.
                p = self.session.prediction
                preferred = p.labels_layer.name if p is not None and p.labels_layer is not None else None
                combo.setCurrentText(preferred if preferred in names and combo is self.labels_combo else names[0])
            combo.blockSignals(False)
        self._offer_reference()
        self._margin_step()

    def _margin_step(self, *_):
        """The border spin box steps by the labels' in-plane voxel size: on a 1 mm grid a
        0.5 mm step moves nothing (a value can still be typed)."""
        name = self.labels_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if layer is None:
            return
        step = max(0.1, round(min(self._spacing(layer)[1:]), 1))
        self.margin_mm.setSingleStep(step)

    def _gt_picked(self, *_):
        self._gt_chosen = True

    def _offer_reference(self) -> None:
        """An opened mask (a reference: the reader marks it) becomes the ground truth while
        the user has not picked one, so the measurement says Dice against it at once."""
        if self._gt_chosen or self.gt_combo.currentText() not in ("", "(none)"):
            return
        editing = self.labels_combo.currentText()
        for layer in self.viewer.layers:
            meta = layer.metadata.get("tumorseg") if isinstance(layer.metadata, dict) else None
            if (isinstance(layer, napari.layers.Labels) and layer.name != editing
                    and isinstance(meta, dict) and meta.get("reference")):
                self.gt_combo.setCurrentText(layer.name)
                return

    def labels_layer(self):
        name = self.labels_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise TumorSegError("open or predict a labels layer to correct")
        return self.viewer.layers[name]

    def _spacing(self, layer) -> tuple[float, float, float]:
        sc = tuple(float(s) for s in layer.scale)
        return sc[-3:] if len(sc) >= 3 else (1.0, *sc[-2:])

    def _z(self, layer) -> int | None:
        return int(self.viewer.dims.current_step[0]) if layer.ndim >= 3 else None

    # -- edits --------------------------------------------------------------------------
    def _toggle_click_keep(self, on: bool) -> None:
        self._toggle_click(on, self.click_keep, self.click_remove)

    def _toggle_click_remove(self, on: bool) -> None:
        self._toggle_click(on, self.click_remove, self.click_keep)

    @guarded("click tool failed")
    def _toggle_click(self, on: bool, box, other) -> None:
        """One click tool at a time: ticking keep unticks remove and the reverse."""
        if on and other.isChecked():
            other.blockSignals(True)
            other.setChecked(False)
            other.blockSignals(False)
        if self._click_layer is not None and self._on_click in self._click_layer.mouse_drag_callbacks:
            self._click_layer.mouse_drag_callbacks.remove(self._on_click)
            self._click_layer = None
        if on:
            try:
                layer = self.labels_layer()
            except TumorSegError as err:
                notify_error(err)
                box.blockSignals(True)
                box.setChecked(False)
                box.blockSignals(False)
                return
            layer.mode = "pan_zoom"  # clicks must not paint while this tool is on
            layer.mouse_drag_callbacks.append(self._on_click)
            self._click_layer = layer
            what = "keep a component" if box is self.click_keep else "remove a component"
            self.session.claim_tool(f"Correct — {what}", self._release_click_tool)
        elif not self.click_keep.isChecked() and not self.click_remove.isChecked():
            self.session.release_tool(self._release_click_tool)

    def _release_click_tool(self) -> None:
        """Another dock took the canvas: this dock's click tools go off."""
        for box in (self.click_keep, self.click_remove):
            if box.isChecked():
                box.setChecked(False)

    @guarded("edit failed")
    def _on_click(self, layer, event):
        if event.type != "mouse_press" or not self.session.owns_tool(self._release_click_tool):
            return
        point = layer.world_to_data(event.position)
        if self.click_remove.isChecked():
            self.remove_at(point)
        else:
            self.keep_at(point)

    def _edit(self, operation) -> int:
        """Run ``operation(layer, labels) -> EditResult`` and apply it as one undo step."""
        try:
            layer = self.labels_layer()
            res = operation(layer, np.asarray(layer.data))
        except TumorSegError as err:
            notify_error(err)
            return 0
        show_info(res.message)
        return apply_edit(layer, res.labels) if res.changed else 0

    def keep_at(self, point) -> int:
        """Keep only the connected component under ``point`` (data coordinates)."""
        from napari_tumorseg.editing import keep_component_at

        pt = tuple(int(round(p)) for p in point)[-3:]
        return self._edit(lambda layer, labels: keep_component_at(
            labels, pt, slice_only=self.slice_only.isChecked()))

    def remove_at(self, point) -> int:
        """Remove the connected component under ``point`` (data coordinates): one undo step."""
        from napari_tumorseg.editing import remove_component_at

        pt = tuple(int(round(p)) for p in point)[-3:]
        return self._edit(lambda layer, labels: remove_component_at(
            labels, pt, slice_only=self.slice_only.isChecked()))

    @guarded("fill holes failed")
    def fill_holes(self) -> int:
        from napari_tumorseg.editing import fill_holes

        # The viewed slice matters only when "This slice only" is ticked: passing it
        # unticked made fill_holes work on that slice alone instead of in 3D.
        slice_only = self.slice_only.isChecked()
        return self._edit(lambda layer, labels: fill_holes(
            labels, slice_only=slice_only, z=self._z(layer) if slice_only else None))

    @guarded("remove islands failed")
    def remove_islands(self) -> int:
        from napari_tumorseg.editing import remove_islands

        return self._edit(lambda layer, labels: remove_islands(
            labels, self.island_mm3.value(), self._spacing(layer), slice_only=self.slice_only.isChecked()))

    @guarded("moving the border failed")
    def move_border(self) -> int:
        """Grow (positive mm) or shrink (negative) the segmentation's outer border: one undo step."""
        from napari_tumorseg.editing import margin

        slice_only = self.slice_only.isChecked()
        value = self.margin_label.value() or None
        return self._edit(lambda layer, labels: margin(
            labels, self.margin_mm.value(), self._spacing(layer), slice_only=slice_only,
            z=self._z(layer) if slice_only else None, value=value, overwrite=self.margin_over.isChecked()))

    @guarded("undo failed")
    def undo(self) -> None:
        try:
            self.labels_layer().undo()
        except TumorSegError as err:
            notify_error(err)

    # -- measurements -------------------------------------------------------------------
    @guarded("measuring failed")
    def measure(self) -> str:
        """Measure the labels layer: case figures, then lesion by lesion (and BraTS regions
        when its label names or its name say its BraTS convention); fills the table and
        draws the diameters."""
        from napari_tumorseg.measurements import compare, format_report, measure

        try:
            layer = self.labels_layer()
        except TumorSegError as err:
            notify_error(err)
            return ""
        spacing = self._spacing(layer)
        labels = np.asarray(layer.data)
        names = layer.metadata.get("label_names") if isinstance(layer.metadata, dict) else None
        # A BraTS map named by its edition (BraTS2021_00006_seg) gets its regions too; a map
        # that nothing names stays a label map (its values alone do not say their convention).
        from napari_tumorseg.brats import convention_from_names

        named = convention_from_names(layer.name)
        try:
            m = measure(labels, spacing, names, brats=named)
        except TumorSegError:  # values outside its edition's labels: measured as a label map
            m = measure(labels, spacing, names)
        parts = [format_report(m, title=f"{layer.name}")]
        c = None
        gt_name = self.gt_combo.currentText()
        if gt_name and gt_name != "(none)" and gt_name != layer.name:
            from napari_tumorseg.widgets.grid import layers_grid_reason

            gt_layer = self.viewer.layers[gt_name]
            gt = np.asarray(gt_layer.data)
            # The check `tumorseg evaluate` makes: same size is not enough, the two must
            # sit in the same place, or the Dice would describe a picture nobody sees.
            reason = layers_grid_reason(layer, gt_layer)
            if reason:
                notify_error(TumorSegError(f"'{gt_name}' is not on the grid of '{layer.name}': {reason}"))
            else:
                c = compare(labels, gt, spacing)
                parts.append(format_report(c, title=f"{layer.name} vs {gt_name}"))
        text = "\n\n".join(parts)
        self._fill_table(measurement_rows(m, c))
        self._draw_diameter(layer, m)
        self.last_report, self.last_measure = text, m
        return text

    def _fill_table(self, rows: list[tuple[str, str]]) -> None:
        self.table.setRowCount(len(rows))
        for r, (name, value) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(name))
            self.table.setItem(r, 1, QTableWidgetItem(value))
        self.table.resizeColumnToContents(0)
        height = self.table.horizontalHeader().height() + sum(self.table.rowHeight(r) for r in range(len(rows)))
        self.table.setMinimumHeight(min(height + 4, 320))

    def table_text(self) -> str:
        """The whole measurements table (case figures, every listed lesion, regions) as
        tab-separated lines (pastes as a table)."""
        rows = [(self.table.item(r, 0).text(), self.table.item(r, 1).text()) for r in range(self.table.rowCount())]
        return "\n".join(f"{a}\t{b}" for a, b in rows)

    def _draw_diameter(self, layer, m: dict) -> None:
        """Each of the largest lesions' longest axial diameter (yellow) and its perpendicular
        (cyan) as two lines on the lesion's slice, as a radiologist draws them; one Shapes
        layer. The view goes to the slice of the case's largest diameter."""
        if self.diameter_layer is not None and self.diameter_layer not in self.viewer.layers:
            self.diameter_layer = None
        lines = _diameter_lines(m)
        if not lines:
            if self.diameter_layer is not None:
                self.diameter_layer.data = []
            return
        ends = np.array([ln[0] for ln in lines], float)  # (n, 2, 3) voxel (z, y, x)
        if layer.ndim == 2:
            data, geometry = list(ends[:, :, 1:]), {"scale": layer.scale, "translate": layer.translate,
                                                    "affine": layer.affine}
            self._diameter_slice = None
        else:
            # napari shows a 3D line only where the layer's slice position equals its z
            # exactly, and an oblique layer's slice position is fractional (the dims point
            # snaps to the viewer's steps, not to this layer's slices). So each line is 2D,
            # its ends in world mm, and it is shown while the viewer shows its slice.
            show_slice(self.viewer, layer, float(m["diameter_slice"]))
            data = [np.array([layer.data_to_world(p) for p in pair], float)[:, -2:] for pair in ends]
            geometry = {"scale": (1.0, 1.0), "translate": (0.0, 0.0)}
            self._diameter_slice = (layer, np.array([int(round(float(pair[0][0]))) for pair in ends]))
        width = max(1.0, 0.004 * max(layer.data.shape[-2:]))  # pixels of the scan
        if layer.ndim >= 3:
            width *= float(min(np.abs(layer.scale[-2:])))  # the line's units are mm there
        features = {"label": [ln[1] for ln in lines], "text": [ln[1] for ln in lines]}
        colors = [ln[2] for ln in lines]
        self._diameter_colors = transform_color(colors)
        if self.diameter_layer is None:
            self.diameter_layer = self.viewer.add_shapes(
                data, shape_type="line", name=f"{layer.name} diameter", edge_color=colors,
                edge_width=width, features=features,
                text={"string": "{text}", "color": "yellow", "size": 10, "anchor": "upper_left"},
                metadata={"tumorseg_output": "diameter"}, **geometry)
        else:
            shapes = self.diameter_layer
            for key, value in geometry.items():
                setattr(shapes, key, value)
            shapes.data = []
            shapes.add_lines(data, edge_width=width, edge_color=colors)
            shapes.features = features
            shapes.refresh_text()
        self._diameter_visibility()

    def _diameter_visibility(self, *_):
        """Each diameter line shows on its own slice only."""
        line, where = self.diameter_layer, getattr(self, "_diameter_slice", None)
        if line is None or line not in self.viewer.layers or len(line.data) == 0:
            return
        if where is None:  # a 2D mask: one slice, always shown
            shown = np.ones(len(line.data), bool)
        else:
            layer, zs = where
            if layer not in self.viewer.layers or len(zs) != len(line.data):
                shown = np.zeros(len(line.data), bool)
            else:
                here = round(float(layer.world_to_data(self.viewer.dims.point)[-3]))
                shown = np.asarray(zs) == here
        line.shown = shown
        # napari's Shapes draws every shape of 2D data on every slice (it has no per-shape
        # visibility), so a line off its slice is drawn transparent and its text left blank:
        # a radiologist must not read another slice's diameter on this one.
        colors = getattr(self, "_diameter_colors", None)
        if colors is not None and len(colors) == len(shown):
            faded = np.array(colors, float)
            faded[:, 3] = np.where(shown, faded[:, 3], 0.0)
            line.edge_color = faded
        labels = list(line.features["label"])
        line.features = {"label": labels, "text": [t if s else "" for t, s in zip(labels, shown)]}
        line.refresh_text()

    # -- export -------------------------------------------------------------------------
    def _source_volume(self, labels_layer):
        """The scan the labels belong to, for geometry and DICOM references (from the session)."""
        source = self.session.source_of(labels_layer)
        name = self.image_combo.currentText()
        if source is None and name and name in self.viewer.layers:
            source = self.viewer.layers[name]
        if source is not None:
            vol = self.session.volume_of(source)
            if tuple(vol.spatial_shape[-labels_layer.ndim:]) == tuple(np.shape(labels_layer.data)):
                return vol
        return volume_from_layer(labels_layer.data, labels_layer.metadata, labels_layer.scale, labels_layer.name,
                                 kind="labels")

    def _model_behind(self, layer) -> str | None:
        """The model that predicted ``layer`` in this viewer, or None for hand-drawn labels:
        passed to the export as ``tumorseg predict`` passes its model (export.dicom_seg.segment_algorithm)."""
        p = self.session.prediction
        if p is not None and p.labels_layer is layer and p.predictor is not None:
            return p.predictor.model_name
        return None

    @guarded("export failed")
    def export(self) -> list[Path]:
        from napari_tumorseg.export import export_labels

        try:
            layer = self.labels_layer()
            out = self.export_picker.path()
            if out is None:
                raise TumorSegError("choose where to export")
            fmt = EXPORT_FORMATS[self.format_combo.currentText()]
            source = self._source_volume(layer)
            names = layer.metadata.get("label_names") if isinstance(layer.metadata, dict) else None
            image = None
            if fmt == "coco" and self.image_combo.currentText() in self.viewer.layers:
                image = np.asarray(self.viewer.layers[self.image_combo.currentText()].data)
            paths = export_labels(np.asarray(layer.data), fmt, out, source=source,
                                  overwrite=self.overwrite.isChecked(),
                                  names={int(k): v for k, v in (names or {}).items()} or None,
                                  image=image, algorithm=self._model_behind(layer))
        except TumorSegError as err:
            notify_error(err)
            return []
        self.session.mark_exported(layer)
        show_info(f"exported {layer.name} as {fmt}: {paths[0] if len(paths) == 1 else f'{len(paths)} files'}")
        return paths

    # -- human in the loop --------------------------------------------------------------
    @guarded("adding to the training set failed")
    def add_to_training_set(self) -> list[Path]:
        """Save the scan (every channel of its case, with its world geometry) and the corrected
        labels as a new case of a NIfTI training folder the trainer reads."""
        from napari_tumorseg.training.corrected_cases import add_corrected_case

        try:
            layer = self.labels_layer()
            folder = self.dataset_picker.path()
            if folder is None:
                raise TumorSegError("choose a training-set folder")
            name = self.image_combo.currentText()
            if not name or name not in self.viewer.layers:
                raise TumorSegError("choose the scan the labels belong to")
            volume = self.session.volume_of(self.viewer.layers[name])
            paths = add_corrected_case(folder, volume, np.asarray(layer.data), stem="corrected",
                                       label_names=layer.metadata.get("label_names")
                                       if isinstance(layer.metadata, dict) else None)
        except TumorSegError as err:
            notify_error(err)
            return []
        show_info(f"added case {paths[0].parent.name} ({len(paths) - 1} sequence(s) + labels) to {folder.name}")
        return paths

    @guarded("opening the Train dock failed")
    def fine_tune(self):
        """Open the Train dock on the corrections folder, starting from the loaded checkpoint."""
        folder = self.dataset_picker.path()
        if folder is None or not folder.is_dir() or not any(folder.iterdir()):
            notify_error(TumorSegError("add at least one corrected case to a training-set folder first"))
            return None
        _, train_widget = self.viewer.window.add_plugin_dock_widget("napari-tumorseg", "Train")
        train_widget.src_path.setChecked(True)
        train_widget.data_picker.set_path(folder)
        ckpt = self.session.checkpoint_path
        if ckpt:
            from napari_tumorseg.models.checkpoint import load_checkpoint

            try:
                _, meta = load_checkpoint(ckpt, build=False)
                train_widget.model_combo.setCurrentText(meta["model_name"])
            except TumorSegError as err:
                notify_error(err)
            train_widget.pretrained.set_path(ckpt)
        train_widget.out_picker.set_path(folder / "finetune_run")
        return train_widget


class _CopyKey(QObject):
    """Runs ``copy`` for the platform's Copy key on ``widget``, instead of the widget's own."""

    def __init__(self, widget, copy):
        super().__init__(widget)
        self._copy = copy
        widget.installEventFilter(self)

    def eventFilter(self, obj, event):
        if event.type() in (QEvent.KeyPress, QEvent.ShortcutOverride) and event.matches(QKeySequence.Copy):
            if event.type() == QEvent.KeyPress:
                self._copy()
            event.accept()
            return True
        return False


#: How many of the largest lesions get their two diameters drawn.
DRAWN_LESIONS = 5


def _diameter_lines(m: dict) -> list[tuple[list, str, str]]:
    """(two (z, y, x) ends, text, colour) of the lines to draw: the longest diameter (labelled
    with both diameters) and its perpendicular (unlabelled) of the lesion holding the case's
    largest diameter first, then of the other largest lesions (by volume), DRAWN_LESIONS in all."""
    lesions = [les for les in m.get("lesions") or [] if les["diameter_mm"] > 0]
    if not lesions:
        ends = m.get("diameter_endpoints")
        if ends and m.get("largest_axial_diameter_mm", 0) > 0:
            return [(ends, f"{m['largest_axial_diameter_mm']:.1f} mm", "yellow")]
        return []
    first = [les for les in lesions if les["lesion"] == m.get("diameter_lesion")]
    chosen = (first + [les for les in lesions if les not in first])[:DRAWN_LESIONS]
    out = []
    for les in chosen:
        tag = f"#{les['lesion']} " if len(lesions) > 1 else ""
        perpendicular = les["perpendicular_mm"] > 0
        # One label per lesion, the bidimensional product as a report quotes it (RANO:
        # "81.4 × 55.6 mm"): two labels anchored at the crossing lines' corners overlapped.
        text = (f"{tag}{les['diameter_mm']:.1f} × {les['perpendicular_mm']:.1f} mm" if perpendicular
                else f"{tag}{les['diameter_mm']:.1f} mm")
        out.append((les["diameter_endpoints"], text, "yellow"))
        if perpendicular:
            out.append((les["perpendicular_endpoints"], "", "cyan"))
    return out


def measurement_rows(m: dict, c: dict | None) -> list[tuple[str, str]]:
    """(name, value) rows: what a report quotes first — volume, diameter, Dice — then the rest
    of the case, BraTS regions, and one block of rows per lesion (the LESION_DISPLAY_CAP
    largest, and how many more)."""
    import math

    from napari_tumorseg.measurements import LESION_DISPLAY_CAP, REGION_TITLES

    def num(v, fmt):
        if v is None:
            return "n/a"
        if isinstance(v, float) and not math.isfinite(v):
            return "undefined (one mask is empty)" if math.isinf(v) else "n/a"
        return fmt.format(v)

    lesions = m.get("lesions") or []
    rows = [("Volume", num(m["volume_ml"], "{:.2f} mL")),
            ("Largest axial diameter", num(m["largest_axial_diameter_mm"], "{:.1f} mm"))]
    if c is not None:
        rows.append(("Dice", num(c["dice"], "{:.3f}")))
    if lesions and m.get("diameter_slice") is not None:
        rows += [("Perpendicular diameter", num(m.get("perpendicular_diameter_mm"), "{:.1f} mm")),
                 ("Bidimensional product", num(m.get("bidimensional_product_mm2"), "{:.0f} mm²"))]
    if m.get("diameter_slice") is not None:
        rows.append(("Diameter on slice", str(m["diameter_slice"])))
    if lesions and len(lesions) > 1:
        rows.append(("Diameter of lesion", str(m.get("diameter_lesion"))))
    rows.append(("Lesions", str(m.get("n_lesions", m["n_components"]))
                 + (f" ({m['n_measurable']} measurable, RANO)" if "n_measurable" in m else "")))
    if c is not None:
        rows += [("IoU", num(c["iou"], "{:.3f}")), ("Precision", num(c["precision"], "{:.3f}")),
                 ("Recall", num(c["recall"], "{:.3f}")), ("HD95", num(c["hd95_mm"], "{:.1f} mm")),
                 ("Ground-truth volume", num(c["gt_volume_ml"], "{:.2f} mL")),
                 ("Volume difference", num(c["volume_difference_ml"], "{:+.2f} mL"))]
    regions = m.get("regions")
    if regions:
        for name in ("WT", "TC", "ET"):
            rows.append((REGION_TITLES[name][:1].upper() + REGION_TITLES[name][1:],
                         num(regions[name]["volume_ml"], "{:.2f} mL")))
    for name, v in (m.get("label_volumes_ml") or {}).items():
        rows.append((f"  {name}", num(v, "{:.2f} mL")))
    if not lesions and len(m.get("component_volumes_ml") or []) > 1:
        rows.append(("Component volumes", ", ".join(f"{v:.2f}" for v in m["component_volumes_ml"]) + " mL"))
    shown = lesions[:LESION_DISPLAY_CAP]
    for les in shown:
        k = les["lesion"]
        rows += [(f"Lesion {k}", num(les["volume_ml"], "{:.2f} mL")),
                 (f"  lesion {k} longest × perpendicular",
                  f"{les['diameter_mm']:.1f} × {les['perpendicular_mm']:.1f} mm"
                  + ("" if les.get("measurable", True) else " · non-measurable (RANO)")),
                 (f"  lesion {k} product", num(les["product_mm2"], "{:.0f} mm²")),
                 (f"  lesion {k} slice", str(les["slice"]))]
        if les.get("regions_ml"):
            rows.append((f"  lesion {k} WT / TC / ET",
                         " / ".join(f"{les['regions_ml'][r]:.2f}" for r in ("WT", "TC", "ET")) + " mL"))
    if len(lesions) > len(shown):
        rest = lesions[len(shown):]
        rows.append(("More lesions", f"{len(rest)} not listed ({sum(les['volume_ml'] for les in rest):.2f} mL "
                                     f"in all, none larger than {shown[-1]['volume_ml']:.2f} mL)"))
    rows.append(("Voxels", str(m["voxel_count"])))
    rows.append(("Voxel size", " × ".join(f"{s:.3g}" for s in m["spacing_mm"]) + " mm"))
    return rows
