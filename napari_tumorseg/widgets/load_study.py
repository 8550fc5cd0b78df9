"""Dock widget: scan a DICOM/NIfTI/TIFF study, list its series, open the chosen ones.

The scans are ticked; masks (ground truth, brain mask, ROI) are listed unticked and open as
labels layers when ticked. Layers are named "<sequence> · <case>" (io.study says how).
"""

from __future__ import annotations

import napari
from napari.utils import progress
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.study import Opened, Study
from napari_tumorseg.per_viewer import real_viewer
from napari_tumorseg.widgets._common import (
    PathPicker,
    guarded,
    hint_label,
    notify_error,
    scroll_body,
    show_info,
    show_warning,
    start_worker,
    thread_worker,
    worker_error_handler,
)
from napari_tumorseg.widgets._session import session_for

COLUMNS = ["Series", "Modality", "Slices", "Spacing (mm)", "Size (z, y, x)", "Kind"]
HINT = "1. Scan a study folder → 2. tick the series (masks open as labels) → 3. Open selected"


class LoadStudyWidget(QWidget):
    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = real_viewer(napari_viewer)  # the viewer itself, not the proxy napari hands a dock
        self.session = session_for(napari_viewer)
        self.study: Study | None = None
        self._worker = None

        self.picker = PathPicker("DICOM folder, DICOMDIR, .nii.gz, .nrrd, .seg.nrrd, .mha, .tif or slice folder")
        self.scan_button = QPushButton("Scan")
        self.scan_button.clicked.connect(self.scan)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.as_channels = QCheckBox("Open image series as channels of one case")
        self.as_channels.setToolTip("FLAIR, T1, T1c, T2 on one grid become one multi-channel image")
        self.open_button = QPushButton("Open selected")
        self.open_button.clicked.connect(self.open_selected)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(self.picker, 1)
        top.addWidget(self.scan_button)
        self.hint = hint_label(HINT)
        layout = QVBoxLayout(scroll_body(self))
        layout.addWidget(self.hint)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.as_channels)
        layout.addWidget(self.open_button)
        layout.addWidget(self.status)

    # -- scanning ---------------------------------------------------------------------
    @guarded("scan failed")
    def scan(self) -> Study | None:
        path = self.picker.path()
        if path is None:
            notify_error(TumorSegError("choose a file or folder first"))
            return None
        try:
            study = Study.scan(path)
        except TumorSegError as err:
            self._clear(f"scan failed: {err}")
            notify_error(err)
            return None
        except Exception as err:  # unexpected reader failure: still no traceback for the user
            worker_error_handler(f"could not read {path.name}")(err)
            self._clear(f"scan failed: could not read {path.name}")
            return None
        self.study = study
        self.table.setRowCount(len(study.entries))
        for row, e in enumerate(study.entries):
            cells = [
                e.title or e.name,
                e.modality,
                str(e.shape[0]),
                " x ".join(f"{s:.3g}" for s in e.spacing),
                " x ".join(str(s) for s in e.shape),
                "mask (labels)" if e.is_mask else e.kind,
            ]
            tip = "\n".join([f"opens as the layer '{e.layer_name}'"
                             + (" (labels)" if e.is_mask else ""), *e.warnings])
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                self.table.setItem(row, col, item)
            check = self.table.item(row, 0)
            check.setFlags(check.flags() | Qt.ItemIsUserCheckable)
            # Scans ticked, masks offered unticked: a ground truth is never a channel by accident.
            check.setCheckState(Qt.Checked if e.ticked else Qt.Unchecked)
        self.table.resizeColumnsToContents()
        msg = f"{len(study.entries)} series found"
        if study.notes:
            msg += f"; {len(study.notes)} note(s): " + "; ".join(study.notes[:3])
        self.status.setText(msg)
        for e in study.entries:
            for w in e.warnings:
                show_warning(f"{e.name}: {w}")
        if not study.entries:
            notify_error(TumorSegError(f"no images found in {path}"))
        return study

    def _clear(self, message: str) -> None:
        """A failed scan leaves no stale series behind: Open must not load the previous study."""
        self.study = None
        self.table.setRowCount(0)
        self.status.setText(message)

    def checked_rows(self) -> list[int]:
        return [r for r in range(self.table.rowCount()) if self.table.item(r, 0).checkState() == Qt.Checked]

    # -- loading ----------------------------------------------------------------------
    @guarded("opening failed")
    def open_selected(self):
        if self.study is None and self.scan() is None:
            return None
        rows = self.checked_rows()
        if not rows:
            notify_error(TumorSegError("tick at least one series to open"))
            return None
        study, as_channels = self.study, self.as_channels.isChecked()
        pbar = progress(total=len(rows), desc="Loading study")

        @thread_worker
        def work():
            result = None
            for item in study.load(rows, as_channels=as_channels):
                if isinstance(item, Opened):
                    result = item
                else:
                    yield item
            return result

        worker = work()
        worker.yielded.connect(lambda ev: (pbar.set_description(ev[2]), pbar.update(ev[0] - pbar.n)))
        worker.returned.connect(self._add_volumes)
        worker.errored.connect(worker_error_handler("loading failed"))
        worker.finished.connect(pbar.close)
        worker.finished.connect(lambda: self.open_button.setEnabled(True))
        self.open_button.setEnabled(False)
        self._worker = worker
        start_worker(worker)
        return worker

    @guarded("opening failed")
    def _add_volumes(self, result: Opened | None) -> None:
        from napari_tumorseg.io.readers import layer_data

        if result is None:
            return
        for note in result.notes:
            show_warning(note)  # a case opened scan by scan: said once, with why
        added = []
        volumes = result.volumes
        for vol, (data, kwargs, layer_type) in zip(volumes, layer_data(volumes)):
            for warning in vol.metadata.get("warnings", []):
                show_warning(f"{vol.name}: {warning}")  # gaps, missing slices: never silent
            layers = getattr(self.viewer, f"add_{layer_type}")(data, **kwargs)
            layers = layers if isinstance(layers, list) else [layers]
            self.session.register(layers, vol)  # the docks share the volume, not its layers' copies
            added += layers
        if added:
            self.viewer.reset_view()
            show_info(f"opened {len(added)} layer(s)")

