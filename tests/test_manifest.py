"""The npe2 manifest is valid, single-sourced, and its non-widget hooks are Qt-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from npe2 import PluginManifest

REPO = Path(__file__).resolve().parents[1]


def _manifest() -> PluginManifest:
    return PluginManifest.from_file(REPO / "napari.yaml")


def test_manifest_validates_with_npe2_cli():
    out = subprocess.run(["npe2", "validate", str(REPO / "napari.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_installed_distribution_serves_the_same_manifest():
    # One source: the file napari loads from the installed package is the top-level one.
    installed = PluginManifest.from_distribution("napari-tumorseg")
    assert installed.model_dump() == _manifest().model_dump()
    import napari_tumorseg

    packaged = Path(napari_tumorseg.__file__).parent / "napari.yaml"
    assert packaged.resolve() == (REPO / "napari.yaml").resolve() or packaged.read_text() == (
        REPO / "napari.yaml"
    ).read_text()


def test_every_python_name_resolves():
    for cmd in _manifest().contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        code = f"import importlib; m = importlib.import_module({module!r}); assert callable(getattr(m, {attr!r}))"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert res.returncode == 0, f"{cmd.python_name}: {res.stderr[-500:]}"


def test_non_widget_hooks_import_without_qt():
    manifest = _manifest()
    widget_cmds = {w.command for w in manifest.contributions.widgets}
    names = [c.python_name for c in manifest.contributions.commands if c.id not in widget_cmds]
    assert names
    # Block every Qt binding and napari itself: core hooks must not need them.
    code = (
        "import sys\n"
        "for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'vispy'): sys.modules[m] = None\n"
        "import importlib\n"
        f"for name in {names!r}:\n"
        "    mod, _, attr = name.partition(':')\n"
        "    assert callable(getattr(importlib.import_module(mod), attr)), name\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_core_packages_import_without_qt():
    code = (
        "import sys\n"
        "for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'vispy', 'magicgui'): sys.modules[m] = None\n"
        "import napari_tumorseg.io.readers, napari_tumorseg.coco, napari_tumorseg.models, napari_tumorseg.metrics\n"
        "import napari_tumorseg.training, napari_tumorseg.inference, napari_tumorseg.export, napari_tumorseg.cli\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_manifest_yaml_is_plain_yaml_with_one_copy():
    data = yaml.safe_load((REPO / "napari.yaml").read_text())
    assert data["name"] == "napari-tumorseg"
    copies = [p for p in REPO.rglob("napari.yaml") if not p.is_symlink() and ".git" not in p.parts]
    assert copies == [REPO / "napari.yaml"]
