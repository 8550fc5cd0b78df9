"""Orientation letters (A/P, R/L, S/I) at the four edges of napari's canvas.

They follow what is on screen: the displayed plane (napari's ``dims.order``, so axial,
coronal, sagittal or any transposition), the camera's flips, and hide in 3D where edges
have no single direction. The letters themselves come from the Qt-free
:func:`napari_tumorseg.io.orientation.canvas_letters`; this module only draws them, as
four small labels over the canvas, so they never enter the image pixels (screenshots of
the canvas stay comparable) but are always in the user's view.

:func:`install_orientation_letters` is idempotent per viewer: every dock may call it.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QLabel

from napari_tumorseg.io.orientation import canvas_letters
from napari_tumorseg.widgets._per_viewer import PerViewer

_INSTALLED: "PerViewer[OrientationLetters]" = PerViewer()
_MARGIN = 6
_STYLE = (
    "QLabel { color: #ffd84d; background: transparent; font-weight: bold; font-size: 15px; }"
)


def spatial_displayed(viewer) -> tuple[int, int] | None:
    """The (vertical, horizontal) spatial world axes on screen, or None (3D, or < 2 axes).

    The package's layers put the three spatial axes last (channels, time come first), so
    a world axis k of an n-D viewer is spatial axis k - (n - 3); a 2D viewer shows y, x.
    """
    if viewer.dims.ndisplay != 2:
        return None
    ndim = viewer.dims.ndim
    displayed = list(viewer.dims.displayed)
    if len(displayed) != 2:
        return None
    offset = ndim - 3
    axes = tuple(int(d) - offset for d in displayed)
    if any(a < 0 or a > 2 for a in axes):
        return None
    return axes  # type: ignore[return-value]


def letters_for_viewer(viewer) -> dict[str, str] | None:
    """The four edge letters of the viewer's current 2D view, or None when not applicable."""
    axes = spatial_displayed(viewer)
    if axes is None:
        return None
    orientation = tuple(getattr(viewer.camera, "orientation2d", ("down", "right")))
    return canvas_letters(axes, orientation2d=orientation)


class OrientationLetters(QObject):
    """Four labels kept at the canvas edges and in step with the viewer."""

    def __init__(self, viewer) -> None:
        canvas = viewer.window._qt_viewer.canvas.native
        super().__init__(canvas)
        self._viewer = weakref.ref(viewer)
        self._canvas = canvas
        self.labels: dict[str, QLabel] = {}
        for edge in ("top", "bottom", "left", "right"):
            label = QLabel("", canvas)
            label.setStyleSheet(_STYLE)
            label.setAttribute(Qt.WA_TransparentForMouseEvents, True)
            label.setToolTip("Patient orientation: A anterior, P posterior, R right, L left, "
                             "S superior, I inferior")
            self.labels[edge] = label
        canvas.installEventFilter(self)
        viewer.dims.events.order.connect(self.update)
        viewer.dims.events.ndisplay.connect(self.update)
        viewer.dims.events.ndim.connect(self.update)
        viewer.camera.events.orientation.connect(self.update)
        self.update()

    def text(self) -> dict[str, str]:
        """What each edge shows now ("" when hidden)."""
        return {e: (lab.text() if lab.isVisible() else "") for e, lab in self.labels.items()}

    def update(self, *_args) -> None:
        viewer = self._viewer()
        if viewer is None:
            return
        letters = letters_for_viewer(viewer)
        for edge, label in self.labels.items():
            if letters is None:
                label.hide()
                continue
            label.setText(letters[edge])
            label.adjustSize()
            label.show()
            label.raise_()
        self._place()

    def _place(self) -> None:
        w, h = self._canvas.width(), self._canvas.height()
        for edge, label in self.labels.items():
            lw, lh = label.width(), label.height()
            x, y = {
                "top": ((w - lw) // 2, _MARGIN),
                "bottom": ((w - lw) // 2, h - lh - _MARGIN),
                "left": (_MARGIN, (h - lh) // 2),
                "right": (w - lw - _MARGIN, (h - lh) // 2),
            }[edge]
            label.move(x, y)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if obj is self._canvas and event.type() in (QEvent.Resize, QEvent.Show):
            self._place()
        return False


def install_orientation_letters(viewer) -> OrientationLetters | None:
    """Show orientation letters on ``viewer``'s canvas (once per viewer; later calls return
    the same overlay). None for a viewer without a Qt window (headless)."""
    existing = _INSTALLED.get(viewer)
    if existing is not None:
        return existing
    window = getattr(viewer, "window", None)
    if window is None or getattr(window, "_qt_viewer", None) is None:
        return None
    # An oblique series (a tilted head, BRAINIX) carries a few degrees of out-of-plane
    # rotation in its layer affine; napari then shows each acquired slice in its own plane,
    # which is what a radiologist reads, and warns once that it did not resample. That
    # notice is about napari internals, not the patient: kept out of the user's way.
    warnings.filterwarnings("ignore", message="Non-orthogonal slicing is being requested")
    overlay = OrientationLetters(viewer)
    _INSTALLED.set(viewer, overlay)
    return overlay
