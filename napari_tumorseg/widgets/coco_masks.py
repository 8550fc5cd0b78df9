"""Dock widget: preview a COCO export's polygons and masks, then write one TIFF per image.

Also the reverse: a labels layer to a COCO JSON (one image per labelled slice).
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from napari.utils import progress
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_tumorseg.coco.dataset import find_coco_splits, load_coco
from napari_tumorseg.coco.from_masks import labels_to_coco, write_coco
from napari_tumorseg.coco.to_masks import coco_to_masks, render_coco_image
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.per_viewer import real_viewer
from napari_tumorseg.widgets._common import (
    PathPicker,
    notify_error,
    scroll_body,
    set_choices,
    show_info,
    show_warning,
    start_worker,
    thread_worker,
    worker_error_handler,
)

PREVIEW_PREFIX = "COCO preview"


class CocoMasksWidget(QWidget):
    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)  # the viewer itself, not the proxy napari hands a dock
        self._sets: dict[str, object] = {}
        self._worker = None
        self.last_report = None

        # -- COCO -> masks --------------------------------------------------------------
        self.coco_picker = PathPicker("_annotations.coco.json or export folder", "COCO JSON (*.json)")
        self.load_button = QPushButton("Load")
        self.load_button.clicked.connect(self.load)
        self.image_combo = QComboBox()
        self.image_combo.currentIndexChanged.connect(lambda _i: self.preview())
        self.out_picker = PathPicker("output folder for the masks", file=False)
        self.per_category = QCheckBox("Category id as label value (default: binary 0/255)")
        self.per_category.toggled.connect(lambda _c: self.preview())
        self.overwrite = QCheckBox("Overwrite existing masks")
        self.skip_invalid = QCheckBox("Skip invalid records (write the valid images' masks)")
        self.skip_invalid.setToolTip("off: an invalid record means nothing is written (all or nothing, as "
                                     "tumorseg coco2mask); on: as --skip-invalid, each skipped record is named")
        self.convert_button = QPushButton("Write masks")
        self.convert_button.clicked.connect(self.convert)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        box = QGroupBox("COCO polygons → TIFF masks")
        form = QFormLayout(box)
        row = QHBoxLayout()
        row.addWidget(self.coco_picker, 1)
        row.addWidget(self.load_button)
        form.addRow("COCO", row)
        form.addRow("Preview", self.image_combo)
        form.addRow("Output", self.out_picker)
        form.addRow(self.per_category)
        form.addRow(self.overwrite)
        form.addRow(self.skip_invalid)
        buttons = QHBoxLayout()
        buttons.addWidget(self.convert_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        form.addRow(self.status)

        # -- labels layer -> COCO -------------------------------------------------------
        self.labels_combo = QComboBox()
        self.json_picker = PathPicker("output .json", "COCO JSON (*.json)", folder=False, save=True)
        self.json_overwrite = QCheckBox("Overwrite")
        self.export_button = QPushButton("Export labels to COCO")
        self.export_button.clicked.connect(self.export_labels)
        box2 = QGroupBox("Labels layer → COCO JSON")
        form2 = QFormLayout(box2)
        form2.addRow("Labels", self.labels_combo)
        form2.addRow("JSON", self.json_picker)
        form2.addRow(self.json_overwrite)
        form2.addRow(self.export_button)

        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(box)
        layout.addWidget(box2)
        layout.addStretch(1)
        self.viewer.layers.events.inserted.connect(self._refresh_labels)
        self.viewer.layers.events.removed.connect(self._refresh_labels)
        self._refresh_labels()

    # -- preview ------------------------------------------------------------------------
    def load(self) -> bool:
        path = self.coco_picker.path()
        if path is None:
            notify_error(TumorSegError("choose a COCO JSON or an export folder"))
            return False
        try:
            splits = find_coco_splits(path)
            self._sets = {split: load_coco(json_path) for split, json_path in splits}
        except TumorSegError as err:
            notify_error(err)
            return False
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for split, cs in self._sets.items():
            for image_id, image in cs.images.items():
                n = len(cs.anns_by_image.get(image_id, []))
                label = f"{split + '/' if split else ''}{image['file_name']}  ({n} annotation{'s' * (n != 1)})"
                self.image_combo.addItem(label, (split, image_id))
        self.image_combo.blockSignals(False)
        # Open the preview on the first image that has something to show.
        for i in range(self.image_combo.count()):
            split, image_id = self.image_combo.itemData(i)
            if self._sets[split].anns_by_image.get(image_id):
                self.image_combo.setCurrentIndex(i)
                break
        n_images = sum(len(cs.images) for cs in self._sets.values())
        self.status.setText(f"{n_images} images in {len(self._sets)} split(s): {', '.join(s or '(root)' for s in self._sets)}")
        if self.out_picker.path() is None:
            base = path if path.is_dir() else path.parent
            self.out_picker.set_path(base.parent / f"{base.name}_masks")
        if n_images:
            self.preview()
        return True

    def preview(self) -> None:
        data = self.image_combo.currentData()
        if data is None:
            return
        split, image_id = data
        try:
            pixels, mask, polygons = render_coco_image(self._sets[split], image_id, self.per_category.isChecked())
        except TumorSegError as err:
            notify_error(err)
            return
        for layer in [l for l in self.viewer.layers if l.name.startswith(PREVIEW_PREFIX)]:
            self.viewer.layers.remove(layer)
        rgb = pixels.ndim == 3 and pixels.shape[-1] in (3, 4)
        if rgb and np.all(pixels[..., 0] == pixels[..., 1]) and np.all(pixels[..., 1] == pixels[..., 2]):
            pixels, rgb = pixels[..., 0], False  # grey MRI stored as RGB JPEG
        self.viewer.add_image(pixels, name=f"{PREVIEW_PREFIX}: image", rgb=rgb)
        labels = mask if self.per_category.isChecked() else (mask > 0).astype(np.uint8)
        self.viewer.add_labels(labels, name=f"{PREVIEW_PREFIX}: mask", opacity=0.4)
        if polygons:
            self.viewer.add_shapes(
                polygons, shape_type="polygon", name=f"{PREVIEW_PREFIX}: polygons",
                edge_color="yellow", face_color="transparent", edge_width=2,
            )
        self.viewer.reset_view()

    # -- conversion ---------------------------------------------------------------------
    def convert(self):
        coco, out = self.coco_picker.path(), self.out_picker.path()
        if coco is None or out is None:
            notify_error(TumorSegError("choose a COCO input and an output folder"))
            return None
        per_category, overwrite = self.per_category.isChecked(), self.overwrite.isChecked()
        skip_invalid = self.skip_invalid.isChecked()
        try:
            splits = find_coco_splits(coco)
            total = sum(len(load_coco(p).images) for _, p in splits)
        except TumorSegError as err:
            notify_error(err)
            return None
        pbar = progress(total=total, desc="COCO → masks")

        @thread_worker
        def work():
            report = None
            for p in coco_to_masks(coco, out, per_category=per_category, overwrite=overwrite,
                                   skip_invalid=skip_invalid):
                report = p.report
                yield p
            return report

        worker = work()
        worker.yielded.connect(lambda p: (pbar.update(p.done - pbar.n), pbar.set_description(f"COCO → masks: {p.current}")))
        worker.returned.connect(self._finished)
        worker.errored.connect(worker_error_handler("conversion failed"))
        worker.finished.connect(pbar.close)
        worker.finished.connect(lambda: (self.convert_button.setEnabled(True), self.cancel_button.setEnabled(False)))
        self.convert_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._worker = worker
        start_worker(worker)
        return worker

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.quit()  # stops at the next yield: masks already written are complete files
            self.status.setText("cancelled; masks written so far are kept")

    def _finished(self, report) -> None:
        self.last_report = report
        if report is None:
            self.status.setText("nothing to convert")
            return
        self.status.setText(report.summary(max_lines=5))
        if report.invalid:  # skip-invalid, as the CLI: the valid masks are written, the bad records named once
            show_warning(f"wrote {len(report.written)} masks; {len(report.invalid)} invalid record(s) "
                         f"skipped, first: {report.invalid[0]}")
            return
        show_info(f"wrote {len(report.written)} masks to {report.out_dir}; kept {len(report.skipped_existing)} existing")

    # -- labels -> COCO -----------------------------------------------------------------
    def _refresh_labels(self, *_):
        set_choices(self.labels_combo, [l.name for l in self.viewer.layers if isinstance(l, napari.layers.Labels)])

    def export_labels(self) -> Path | None:
        name, out = self.labels_combo.currentText(), self.json_picker.path()
        if not name or out is None:
            notify_error(TumorSegError("choose a labels layer and an output .json"))
            return None
        layer = self.viewer.layers[name]
        try:
            coco = labels_to_coco(np.asarray(layer.data), name=name.replace(" ", "_"))
            path = write_coco(coco, out, overwrite=self.json_overwrite.isChecked())
        except TumorSegError as err:
            notify_error(err)
            return None
        show_info(f"wrote {len(coco['annotations'])} polygons on {len(coco['images'])} slices to {path}")
        return path
