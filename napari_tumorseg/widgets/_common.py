"""Small Qt helpers shared by the dock widgets."""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

__all__ = ["PathPicker", "notify_error", "worker_error_handler", "set_choices", "show_info", "show_warning"]


def notify_error(err: BaseException) -> None:
    """A user-facing failure: one line in napari's notification area, never a traceback."""
    show_error(str(err) or type(err).__name__)


def worker_error_handler(prefix: str):
    """Slot for a thread_worker's ``errored``: our errors as they are, others prefixed."""
    from napari_tumorseg.errors import TumorSegError

    def handle(err: BaseException) -> None:
        notify_error(err if isinstance(err, TumorSegError) else TumorSegError(f"{prefix}: {err}"))

    return handle


def set_choices(combo, names: list[str], keep_current: bool = True) -> None:
    """Refill a combo box, keeping the user's current choice when it is still there."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if keep_current and current in names:
        combo.setCurrentText(current)
    combo.blockSignals(False)


class PathPicker(QWidget):
    """A line edit with browse buttons for a file and/or a folder."""

    def __init__(self, placeholder: str = "", file_filter: str = "", file: bool = True, folder: bool = True,
                 save: bool = False, parent=None):
        super().__init__(parent)
        self._filter = file_filter
        self._save = save
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        if file:
            b = QPushButton("File…")
            b.clicked.connect(self._pick_file)
            layout.addWidget(b)
        if folder:
            b = QPushButton("Folder…")
            b.clicked.connect(self._pick_folder)
            layout.addWidget(b)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path) -> None:
        self.edit.setText(str(path))

    def _pick_file(self) -> None:
        if self._save:
            name, _ = QFileDialog.getSaveFileName(self, "Save as", self.edit.text(), self._filter)
        else:
            name, _ = QFileDialog.getOpenFileName(self, "Choose a file", self.edit.text(), self._filter)
        if name:
            self.edit.setText(name)

    def _pick_folder(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Choose a folder", self.edit.text())
        if name:
            self.edit.setText(name)
