"""npe2 reader contribution: DICOM, NIfTI, TIFF/JPG/PNG and folders of them.

``napari_get_reader`` answers None for anything that is not ours (so napari tries the
next reader) and otherwise a function returning layer data tuples. Once a path is
ours, a broken file raises ReadError with a one-line message, which napari shows;
DICOM load warnings (uneven slice gaps, missing slices) are emitted as Python
warnings, which napari turns into notifications.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

from napari_tumorseg.errors import ReadError, TumorSegError, first_line
from napari_tumorseg.io.readers import can_read, layer_data, read_path


def _warnings_of(volume) -> list[str]:
    if "dicom" in volume.metadata:
        return []  # io.dicom already warned while loading
    return list(volume.metadata.get("warnings", []))


def read_layers(path: str | list[str]) -> list[tuple]:
    """Read one path, or several (napari passes a list when many files are dropped)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    _watch_current_viewer()
    layers = []
    for p in paths:
        volumes = _read_without_locals(p)
        for v in volumes:
            for message in _warnings_of(v):
                warnings.warn(f"{v.name}: {message}", stacklevel=2)
        layers.extend(layer_data(volumes))
    return layers


def _read_without_locals(path) -> list:
    """read_path, whose failure napari reports with only this frame behind it.

    napari's error display offers the traceback with every frame's local variables; below
    this frame those are the DICOM headers being parsed (names, IDs, UIDs, dates). So the
    error is raised afresh here, as one line, without the frames it came from.
    """
    try:
        return read_path(path)
    except TumorSegError as err:
        failure = type(err)(str(err))
    except Exception as err:  # noqa: BLE001 - a library failure: one sanitised line
        failure = ReadError(f"{Path(str(path)).name}: {type(err).__name__}: {first_line(err)}")
    raise failure from None


def _watch_current_viewer() -> None:
    """Give the viewer its session before napari adds our layers: the session applies what a
    layer's constructor cannot take (a reference mask's outline, ``metadata["tumorseg_display"]``)."""
    try:
        import napari

        viewer = napari.current_viewer()
    except ImportError:  # reading without napari (scripts): nothing to display
        return
    if viewer is not None:
        from napari_tumorseg.widgets._session import session_for

        session_for(viewer)


def napari_get_reader(path: str | list[str]) -> Callable | None:
    """Return a reader for ``path`` if this plugin can open it, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(can_read(p) for p in paths):
        return None
    return read_layers
