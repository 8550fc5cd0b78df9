"""Small Qt helpers shared by the dock widgets."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from napari.qt.threading import thread_worker as _napari_thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QDockWidget, QFileDialog, QFrame, QHBoxLayout, QLineEdit, QPushButton, QScrollArea, QVBoxLayout, QWidget

from napari_tumorseg.errors import first_line

__all__ = ["PathPicker", "notify_error", "worker_error_handler", "set_choices", "show_info", "show_warning",
           "thread_worker", "scroll_body", "hint_label", "sanitise"]

log = logging.getLogger("napari_tumorseg")

#: napari's thread_worker, minus its default of re-raising a worker's exception on the GUI
#: thread: that re-raise reached napari's own error display (a second pop-up, and a console
#: traceback with every frame's local variables: DICOM headers, patient names, UIDs).
#: A plugin worker's errors go only to :func:`worker_error_handler`.
thread_worker = partial(_napari_thread_worker, ignore_errors=True)

def sanitise(text: str, limit: int = 200) -> str:
    """One line of an unexpected exception's text, with what could identify a patient removed."""
    return first_line(str(text), limit)


def notify_error(err: BaseException) -> None:
    """A user-facing failure: one line in napari's notification area, never a traceback."""
    show_error(str(err) or type(err).__name__)


def worker_error_handler(prefix: str):
    """Slot for a thread_worker's ``errored``: the ONE place a worker's failure reaches the user.

    Our errors (TumorSegError) carry a message written for the user and show as they are.
    Anything else is a bug or a library failure: the user sees its type and a sanitised
    first line, and the log gets the same line: never a traceback, whose frames' local
    variables would carry the DICOM headers being read.
    """
    from napari_tumorseg.errors import TumorSegError

    def handle(err: BaseException) -> None:
        if isinstance(err, TumorSegError):
            notify_error(err)
            return
        line = f"{prefix}: {type(err).__name__}: {sanitise(str(err))}".rstrip(": ")
        log.error(line)
        notify_error(TumorSegError(line))

    return handle


def scroll_body(widget: QWidget) -> QWidget:
    """Give a dock a scroll area and return the widget its content goes in.

    napari stacks plugin docks in one column: without scrolling, their summed minimum
    heights grow the window past the screen and push the lower buttons out of reach.
    """
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    body = QWidget(area)
    area.setWidget(body)
    outer.addWidget(area)
    widget.scroll_area = area
    widget._short_title = _ShortDockTitle(widget)
    widget.installEventFilter(widget._short_title)
    return body


class _ShortDockTitle(QObject):
    """Names the dock's tab "Predict", not "Predict (napari-tumorseg)".

    napari titles a plugin dock "<widget> (<plugin>)"; tabified, Qt squeezes five such
    titles into the dock's width and elides them all to "Load stu…". The title bar keeps
    the full name.
    """

    def eventFilter(self, obj, event):
        if event.type() == QEvent.ParentChange:
            parent = obj.parentWidget()
            while parent is not None and not isinstance(parent, QDockWidget):
                parent = parent.parentWidget()
            if parent is not None:
                title = parent.windowTitle()
                for suffix in (" (napari-tumorseg)", " (Tumour Segmentation)"):
                    if title.endswith(suffix):
                        parent.setWindowTitle(title[: -len(suffix)])
        return False


def hint_label(text: str):
    """A short "what to do next" line at the top of a dock."""
    from qtpy.QtWidgets import QLabel

    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("font-style: italic;")
    return label


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
