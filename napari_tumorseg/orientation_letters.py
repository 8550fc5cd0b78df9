"""Orientation letters (A/P, R/L, S/I) at the four edges of napari's canvas.

They follow what is on screen: the displayed plane (napari's ``dims.order``, so axial,
coronal, sagittal or any transposition), the camera's flips, and hide in 3D where edges
have no single direction. The letters themselves come from the Qt-free
:func:`napari_tumorseg.io.orientation.canvas_letters`; this module only shows them, as four
of napari's own canvas text overlays (``viewer.canvas.overlays``, public API since napari
0.9), so no private napari attribute is touched and they stay in the user's view.

:func:`install_orientation_letters` is idempotent per viewer: every dock may call it.
"""

from __future__ import annotations

import warnings
import weakref

from napari_tumorseg.io.orientation import canvas_letters
from napari_tumorseg.per_viewer import PerViewer, real_viewer

_INSTALLED: "PerViewer[OrientationLetters]" = PerViewer()
_COLOUR = "#ffd84d"
# Canvas overlay key per edge, and where napari places it.
_EDGES = {"top": "top_center", "bottom": "bottom_center", "left": "middle_left", "right": "middle_right"}


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
    orientation = tuple(getattr(viewer.scene.camera, "orientation2d", ("down", "right")))
    return canvas_letters(axes, orientation2d=orientation)


class OrientationLetters:
    """Four canvas text overlays kept in step with the viewer."""

    def __init__(self, viewer) -> None:
        from napari.components.overlays import TextOverlay

        self._viewer = weakref.ref(viewer)
        self.overlays = {}
        for edge, position in _EDGES.items():
            overlay = TextOverlay(text="", position=position, color=_COLOUR, font_size=13, visible=False)
            viewer.canvas.overlays[f"tumorseg_orientation_{edge}"] = overlay
            self.overlays[edge] = overlay
        viewer.dims.events.order.connect(self.update)
        viewer.dims.events.ndisplay.connect(self.update)
        viewer.dims.events.ndim.connect(self.update)
        viewer.scene.camera.events.orientation.connect(self.update)
        self.update()

    def text(self) -> dict[str, str]:
        """What each edge shows now ("" when hidden)."""
        return {e: (o.text if o.visible else "") for e, o in self.overlays.items()}

    def update(self, *_args) -> None:
        viewer = self._viewer()
        if viewer is None:
            return
        letters = letters_for_viewer(viewer)
        for edge, overlay in self.overlays.items():
            if letters is None:
                overlay.visible = False
                continue
            overlay.text = letters[edge]
            overlay.visible = True


def install_orientation_letters(viewer) -> OrientationLetters | None:
    """Show orientation letters on ``viewer``'s canvas (once per viewer; later calls return
    the same overlay). None for a viewer model without a canvas."""
    viewer = real_viewer(viewer)
    existing = _INSTALLED.get(viewer)
    if existing is not None:
        return existing
    if getattr(viewer, "canvas", None) is None or getattr(viewer, "scene", None) is None:
        return None
    # An oblique series (a tilted head, BRAINIX) carries a few degrees of out-of-plane
    # rotation in its layer affine; napari then shows each acquired slice in its own plane,
    # which is what a radiologist reads, and warns once that it did not resample. That
    # notice is about napari internals, not the patient: kept out of the user's way.
    warnings.filterwarnings("ignore", message="Non-orthogonal slicing is being requested")
    overlay = OrientationLetters(viewer)
    _INSTALLED.set(viewer, overlay)
    return overlay
