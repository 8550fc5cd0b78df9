"""Dock widget: scan a DICOM/NIfTI/TIFF study, list its series, open the chosen ones."""

from __future__ import annotations

import napari
from napari.qt.threading import thread_worker
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
from napari_tumorseg.io.study import Study
from napari_tumorseg.widgets._common import PathPicker, notify_error, show_info, show_warning, worker_error_handler
from napari_tumorseg.widgets._session import session_for

COLUMNS = ["Series", "Modality", "Slices", "Spacing (mm)", "Size (z, y, x)", "Kind"]


class LoadStudyWidget(QWidget):
    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.study: Study | None = None
        self._worker = None

        self.picker = PathPicker("DICOM folder, DICOMDIR, .nii.gz, .tif or slice folder")
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
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.as_channels)
        layout.addWidget(self.open_button)
        layout.addWidget(self.status)

    # -- scanning ---------------------------------------------------------------------
    def scan(self) -> Study | None:
        path = self.picker.path()
        if path is None:
            notify_error(TumorSegError("choose a file or folder first"))
            return None
        try:
            study = Study.scan(path)
        except TumorSegError as err:
            notify_error(err)
            return None
        except Exception as err:  # unexpected reader failure: still no traceback for the user
            notify_error(TumorSegError(f"could not read {path}: {err}"))
            return None
        self.study = study
        self.table.setRowCount(len(study.entries))
        for row, e in enumerate(study.entries):
            cells = [
                e.name,
                e.modality,
                str(e.shape[0]),
                " x ".join(f"{s:.3g}" for s in e.spacing),
                " x ".join(str(s) for s in e.shape),
                e.kind,
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if e.warnings:
                    item.setToolTip("\n".join(e.warnings))
                self.table.setItem(row, col, item)
            check = self.table.item(row, 0)
            check.setFlags(check.flags() | Qt.ItemIsUserCheckable)
            check.setCheckState(Qt.Checked)
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

    def checked_rows(self) -> list[int]:
        return [r for r in range(self.table.rowCount()) if self.table.item(r, 0).checkState() == Qt.Checked]

    # -- loading ----------------------------------------------------------------------
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
                if isinstance(item, list):
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
        worker.start()
        return worker

    def _add_volumes(self, volumes) -> None:
        added = []
        for vol in volumes or []:
            for warning in vol.metadata.get("warnings", []):
                show_warning(f"{vol.name}: {warning}")  # gaps, missing slices: never silent
            data, kwargs, layer_type = vol.layer_data()
            layers = getattr(self.viewer, f"add_{layer_type}")(data, **kwargs)
            layers = layers if isinstance(layers, list) else [layers]
            self.session.register(layers, vol)  # the docks share the volume, not its layers' copies
            added += layers
        if added:
            self.viewer.reset_view()
            show_info(f"opened {len(added)} layer(s)")
