"""``tumorseg view [PATH]``: open napari with the plugin docked and a case loaded."""

from __future__ import annotations

import argparse

from napari_tumorseg.errors import TumorSegError

# Tabified in this order; the last one added is the tab in front, so Load study is last
# (with no study given, loading one is the next step).
DOCKS = ["COCO to masks", "Train", "Predict", "Correct and export", "Segment by clicks", "Load study"]
CASE_DOCK = "Segment by clicks"  # in front when `tumorseg view` is given a study


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="open napari with the plugin's docks and a case (default: the sample phantom)")
    p.add_argument("path", nargs="?", help="a study to open instead of the sample (DICOM folder, NIfTI, TIFF, ...)")
    p.set_defaults(func=run)


def _quiet_binding_notice() -> None:
    """napari 0.9 raises a warning notification over the canvas at every start that its PyQt5
    support is deprecated. The binding is the design's choice, not the radiologist's, and the
    banner covered the scan and its right-hand orientation letter: the window `tumorseg view`
    opens does without it (napari's own test support switches it off the same way); the
    notice goes to the log once instead. A napari without the switch is left as it is."""
    import logging

    try:
        from napari._qt import qt_main_window
    except ImportError:  # pragma: no cover - napari without Qt
        return
    if getattr(qt_main_window, "SHOW_QT_WARNING", False):
        qt_main_window.SHOW_QT_WARNING = False
        logging.getLogger("napari_tumorseg").info(
            "napari's PyQt5 support is deprecated; the PyQt5 binding is this install's choice (README)")


def open_viewer(path: str | None = None, show: bool = True, viewer=None):
    """The window `tumorseg view` opens: every dock of the plugin (through napari's plugin
    manager, as the Plugins menu adds them) and the case. ``viewer``: build into this one
    instead of a new viewer (tests pass napari's fixture viewer)."""
    import napari

    if viewer is None:
        _quiet_binding_notice()
        viewer = napari.Viewer(title="napari-tumorseg", show=show)
    from npe2 import PluginManager

    names = {w.display_name for w in PluginManager.instance().get_manifest("napari-tumorseg").contributions.widgets}
    docks = {}
    for name in DOCKS:
        if name in names:
            docks[name], _ = viewer.window.add_plugin_dock_widget("napari-tumorseg", name, tabify=True)
    try:
        if path:
            viewer.open(path, plugin="napari-tumorseg")
        else:
            viewer.open_sample("napari-tumorseg", "mri_phantom")
    except Exception as err:  # the viewer stays open; the reason goes to the user
        from napari.utils.notifications import show_error

        show_error(f"could not open {path or 'the sample'}: {err}")
    else:
        if path and CASE_DOCK in docks:
            # A study is open: its next step is a click on it, and the click tool already
            # holds the canvas — the dock that says so comes to the front, not Load study.
            docks[CASE_DOCK].raise_()
    return viewer


def run(args) -> int:
    try:
        import napari
    except ImportError as err:  # pragma: no cover - depends on the install
        raise TumorSegError(f"napari is not installed ({err}); pip install 'napari-tumorseg[gui]'") from err
    open_viewer(args.path)
    napari.run()
    return 0
