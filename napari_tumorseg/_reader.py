"""npe2 reader contribution: DICOM, NIfTI, TIFF/JPG/PNG, DICOM-SEG, COCO JSON and folders of them.

``napari_get_reader`` answers None for anything that is not ours (so napari tries the
next reader) and otherwise :func:`napari_read`. A path that is ours but cannot be read is
refused with ONE notification line, naming the file by its base name at most, with no
traceback: napari's own report of a reader that raises is a generic "Tried opening with
napari-tumorseg, but failed" with the full path and a traceback button, and one that
returns ``[]`` is a "returned no data" error with the full path. So the reader catches the
failure, shows the line itself and returns napari's null-layer sentinel ``[(None,)]``
("read, nothing to add"), which napari accepts silently. Without a viewer (a script)
there is nobody to notify: the one-line :class:`ReadError` is raised instead.

DICOM load warnings (uneven slice gaps, missing slices) are Python warnings, which napari
turns into notifications.

This module never imports the widgets package (nor, through it, Qt): napari may load the
reader in a process that has no dock, and a script may call it without napari's GUI. The
display hints a layer's constructor cannot take (a reference mask's outline) are applied
on insertion by a Qt-free hook (:func:`watch_viewer`); the docks' session applies the
same hints to layers that were opened before it existed.
"""

from __future__ import annotations

import re
import sys
import warnings
import weakref
from pathlib import Path
from typing import Callable

from napari_tumorseg.errors import ReadError, TumorSegError, first_line
from napari_tumorseg.io.readers import can_read, layer_data, read_path
from napari_tumorseg.io.volume import apply_display_hints

# napari's null-layer sentinel: "the reader handled the path and adds no layer".
NO_LAYERS = [(None,)]

# A path inside a message: drive or root, folders (spaces allowed), then the last part (kept).
_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\\/\n:'\"()]+[\\/])*([^\\/\s:'\"()]+)")


def _warnings_of(volume) -> list[str]:
    if "dicom" in volume.metadata:
        return []  # io.dicom already warned while loading
    return list(volume.metadata.get("warnings", []))


def read_layers(path: str | list[str]) -> list[tuple]:
    """Read one path, or several (napari passes a list when many files are dropped).

    A failure raises a one-line :class:`ReadError` with no frame below this one.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers = []
    for p in paths:
        volumes = _read_without_locals(p)
        for v in volumes:
            for message in _warnings_of(v):
                warnings.warn(f"{v.name}: {message}", stacklevel=2)
        # Label maps after the scans: on top of each, so showing another sequence of the
        # case (a hidden T2 listed after the truth) does not cover the outlines.
        volumes = sorted(volumes, key=lambda v: v.kind == "labels")
        layers.extend(layer_data(volumes))
    return layers


def _read_without_locals(path) -> list:
    """read_path, whose failure is raised afresh as one line, without the frames it came from.

    napari's error display offers the traceback with every frame's local variables; below
    this frame those are the DICOM headers being parsed (names, IDs, UIDs, dates).
    """
    try:
        return read_path(path)
    except TumorSegError as err:
        failure = type(err)(str(err))
    except Exception as err:  # noqa: BLE001 - a library failure: one sanitised line
        failure = ReadError(f"{Path(str(path)).name}: {type(err).__name__}: {first_line(err)}")
    raise failure from None


def refusal_line(err: BaseException, paths) -> str:
    """The one line a failed read shows: no folders (a file's base name at most), no header
    value that could name the patient, no line breaks."""
    text = " ".join(str(err).split()) if isinstance(err, TumorSegError) else f"{type(err).__name__}: {err}"
    text = " ".join(text.split())
    forms = {str(p) for p in paths} | {str(Path(str(p)).absolute()) for p in paths}
    for form in sorted(forms, key=len, reverse=True):
        # A file below a given folder keeps "/file" (reduced below); the folder itself its name.
        text = re.sub(re.escape(form) + r"(?=[\\/])", "", text)
        text = text.replace(form, Path(form).name or form)
    text = _PATH.sub(r"\1", text)
    line = first_line(text, 300)
    names = [Path(str(p)).name for p in paths]
    if names and not any(n and n in line for n in names):
        line = f"{names[0]}: {line}"
    return line


def _current_viewer():
    """The viewer napari is opening into, or None. napari.viewer is looked up, never imported:
    importing it loads Qt, and no viewer can exist before it is loaded."""
    module = sys.modules.get("napari.viewer")
    if module is None:
        return None
    try:
        return module.current_viewer()
    except Exception:  # noqa: BLE001 - no viewer to show anything in
        return None


_WATCHED: list[weakref.ref] = []


def _on_inserted(event) -> None:
    apply_display_hints(event.value)


def watch_viewer(viewer) -> None:
    """Apply the readers' display hints to every layer ``viewer`` receives, and show the
    orientation letters (napari canvas overlays, no Qt) — once per viewer, docks or not."""
    from napari_tumorseg.orientation_letters import install_orientation_letters

    install_orientation_letters(viewer)
    _WATCHED[:] = [r for r in _WATCHED if r() is not None]
    if any(r() is viewer for r in _WATCHED):
        return
    viewer.layers.events.inserted.connect(_on_inserted)
    _WATCHED.append(weakref.ref(viewer))


def napari_read(path: str | list[str]) -> list[tuple]:
    """The reader function napari calls (see the module docstring for what a failure does)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    viewer = _current_viewer()
    if viewer is None:
        return read_layers(paths)
    try:
        layers = read_layers(paths)
    except Exception as err:  # noqa: BLE001 - every failure: one line, no traceback
        from napari.utils.notifications import show_error

        show_error(refusal_line(err, paths))
        return NO_LAYERS
    watch_viewer(viewer)
    return layers or NO_LAYERS


def napari_get_reader(path: str | list[str]) -> Callable | None:
    """Return a reader for ``path`` if this plugin can open it, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(can_read(p) for p in paths):
        return None
    return napari_read
