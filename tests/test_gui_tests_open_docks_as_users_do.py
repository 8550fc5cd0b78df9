"""No GUI test builds a dock by calling its class with a viewer: docks come from napari's
plugin manager (``tests.widgets.conftest.add_dock``) or `tumorseg view`'s builder, as a user
gets them — constructing them with the raw viewer hid one session per dock (issue 14)."""

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_no_test_constructs_a_dock_class():
    manifest = yaml.safe_load((ROOT / "napari.yaml").read_text(encoding="utf-8"))
    classes = {c["python_name"].split(":")[1] for c in manifest["contributions"]["commands"]
               if c["python_name"].startswith("napari_tumorseg.widgets.")}
    assert len(classes) == 6
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in classes:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}(...)")
    assert offenders == []
