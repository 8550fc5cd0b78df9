"""Re-export: orientation letters are napari canvas overlays, set up without Qt by
:mod:`napari_tumorseg.orientation_letters` (the reader installs them too)."""

from napari_tumorseg.orientation_letters import (  # noqa: F401
    _INSTALLED,
    OrientationLetters,
    install_orientation_letters,
    letters_for_viewer,
    spatial_displayed,
)
