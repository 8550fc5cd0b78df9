"""Small Qt helpers shared by the dock widgets."""

from __future__ import annotations

import atexit
import logging
from functools import partial
from pathlib import Path

import numpy as np
from napari.qt.threading import thread_worker as _napari_thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Qt, QThreadPool, QTimer
from qtpy.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from napari_tumorseg.errors import first_line


_POOL: QThreadPool | None = None
_RUNNING: set = set()  # started workers, kept alive until they finish


def _plugin_pool() -> QThreadPool:
    """The plugin's own thread pool. Not Qt's global one: Qt converts and scales images on
    the global pool's threads while the GUI thread waits for them holding Python's lock
    (napari's activity spinner does this when a progress bar appears). A plugin worker
    occupying one of those threads and waiting for that lock deadlocked the window — with
    two cores the global pool has two threads, and a model loading beside a scan being
    prepared took both."""
    global _POOL
    if _POOL is None:
        _POOL = QThreadPool()
        _POOL.setMaxThreadCount(max(4, QThreadPool.globalInstance().maxThreadCount()))
    return _POOL


def start_worker(worker) -> None:
    """Start a napari/superqt worker (made with ``_start_thread=False``) on the plugin's pool;
    use instead of ``worker.start()``, after its signals are connected."""
    _RUNNING.add(worker)
    worker.finished.connect(lambda w=worker: _RUNNING.discard(w))
    _plugin_pool().start(worker)


def _wait_for_workers() -> None:
    # A worker still running when the process ends (a window closed right after a dock
    # started loading a model) would emit into Qt objects already torn down and abort the
    # process; at exit, before Python dismantles anything, let the pools' workers finish.
    if _POOL is not None:
        _POOL.waitForDone(30000)
    QThreadPool.globalInstance().waitForDone(30000)


atexit.register(_wait_for_workers)

__all__ = ["PathPicker", "notify_error", "dismiss_notifications_before", "worker_error_handler", "set_choices", "show_info", "show_warning",
           "thread_worker", "start_worker", "scroll_body", "hint_label", "sanitise", "show_slice", "guarded"]

log = logging.getLogger("napari_tumorseg")

#: napari's thread_worker, minus its default of re-raising a worker's exception on the GUI
#: thread: that re-raise reached napari's own error display (a second pop-up, and a console
#: traceback with every frame's local variables: DICOM headers, patient names, UIDs).
#: A plugin worker's errors go only to :func:`worker_error_handler`.
thread_worker = partial(_napari_thread_worker, ignore_errors=True)


def sanitise(text: str, limit: int = 200) -> str:
    """One line of an unexpected exception's text, with what could identify a patient removed."""
    return first_line(str(text), limit)


#: (monotonic time, message) of the failures this plugin showed: what a later success may
#: take off the screen (a notification about older work must not outlive it).
_SHOWN: list[tuple[float, str]] = []


def notify_error(err: BaseException) -> None:
    """A user-facing failure: one line in napari's notification area, never a traceback."""
    import time

    message = str(err) or type(err).__name__
    _SHOWN.append((time.monotonic(), message))
    del _SHOWN[:-50]
    show_error(message)


def dismiss_notifications_before(t0: float, anchor: QWidget) -> int:
    """Close the failure notifications this plugin showed before ``t0`` that are still on
    screen in ``anchor``'s window (a success since has made them stale). Returns how many.

    Found with Qt's public API (children of the main window that are napari's toasts and
    carry one of our messages); napari's own notifications are left alone.
    """
    from qtpy.QtWidgets import QDialog, QLabel

    old = {m for t, m in _SHOWN if t < t0}
    if not old:
        return 0
    window = anchor.window()
    closed = 0
    for dialog in window.findChildren(QDialog) if window is not None else []:
        if type(dialog).__name__ != "NapariQtNotification" or not dialog.isVisible():
            continue
        text = " ".join(label.text() for label in dialog.findChildren(QLabel))
        if any(m in text or text.strip() and text.strip() in m for m in old):
            dialog.close()
            closed += 1
    _SHOWN[:] = [(t, m) for t, m in _SHOWN if t >= t0]
    return closed


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


def guarded(what: str):
    """Decorator for a dock's action (a button's slot, a mouse callback): an error it did not
    expect reaches the user as :func:`worker_error_handler`'s one sanitised line.

    Left alone, it would reach napari's exception hook, whose traceback viewer lists every
    frame's local variables: the DICOM headers, names and UIDs being handled. Qt passes a
    slot its signal's arguments (``clicked`` sends ``checked``); only those the action
    takes are passed on.
    """
    import functools
    import inspect

    from napari_tumorseg.errors import TumorSegError

    def decorate(action):
        params = list(inspect.signature(action).parameters.values())[1:]  # after self
        takes = len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])

        @functools.wraps(action)
        def run(self, *args):
            try:
                return action(self, *args[:takes])
            except TumorSegError as err:
                notify_error(err)
            except Exception as err:  # noqa: BLE001 - the user gets one line, never a traceback
                worker_error_handler(what)(err)
            return None

        return run

    return decorate


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


_PLUGIN_SUFFIXES = (" (napari-tumorseg)", " (Tumour Segmentation)")


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
                for suffix in _PLUGIN_SUFFIXES:
                    if title.endswith(suffix):
                        parent.setWindowTitle(title[: -len(suffix)])
        if event.type() in (QEvent.ParentChange, QEvent.Show):
            # napari tabifies after the dock is built: look at the tab bars once it has.
            QTimer.singleShot(0, lambda w=obj: _readable_tabs(w))
        return False


def _readable_tabs(widget) -> None:
    """The plugin's docks as tabs of one group, with whole titles.

    Opened one by one from the Plugins menu, napari stacks docks in a column: six of them
    leave each ~100 px on a 768 px screen. Tabbed, each gets the full height. Tab titles
    are whole, with scroll arrows when they do not fit (Qt's default elides six titles in
    one dock's width to "Lo…", "CO…").
    """
    try:
        window = widget.window()
    except RuntimeError:  # the dock was closed before the timer fired
        return
    if not isinstance(window, QMainWindow):
        return
    ours = [d for d in window.findChildren(QDockWidget)
            if str(getattr(d, "name", "")).endswith(_PLUGIN_SUFFIXES) and not d.isFloating() and d.isVisible()]
    for area in {window.dockWidgetArea(d) for d in ours}:
        group = [d for d in ours if window.dockWidgetArea(d) == area]
        for dock in group[1:]:
            # Once per dock: one the user has dragged out of the group stays where they put it.
            if not getattr(dock, "_tumorseg_grouped", False) and dock not in window.tabifiedDockWidgets(group[0]):
                window.tabifyDockWidget(group[0], dock)
                dock.raise_()  # the dock just opened is the one in front
        for dock in group:
            dock._tumorseg_grouped = True
    for dock in window.findChildren(QDockWidget):  # every dock of the plugin, scrolling or not
        title = dock.windowTitle()
        for suffix in _PLUGIN_SUFFIXES:
            if title.endswith(suffix):
                dock.setWindowTitle(title[: -len(suffix)])
    for bar in window.findChildren(QTabBar):
        if bar.parentWidget() is window:  # the dock-area tab bars, not a widget's own tabs
            bar.setElideMode(Qt.ElideNone)
            bar.setUsesScrollButtons(True)


def show_slice(viewer, layer, z: float) -> None:
    """Scroll the viewer so that ``layer`` shows its own slice ``z``.

    napari slices a layer at the data position of the whole dims point, so with an oblique
    layer (an affine with an in-plane tilt) the slice depends on the in-plane coordinates
    too, and dims steps are not the layer's indices: solve for the world position instead.
    """
    point = np.asarray(viewer.dims.point, float)
    d0 = float(layer.world_to_data(point)[-3])
    ahead = point.copy()
    ahead[-3] += 1.0
    per_mm = float(layer.world_to_data(ahead)[-3]) - d0
    if per_mm != 0:
        viewer.dims.set_point(viewer.dims.ndim - 3, float(point[-3] + (z - d0) / per_mm))


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
