"""Volume -> napari layer geometry: a cropped series lands where it is in the scanner."""

import numpy as np
import pytest

from napari_tumorseg.io.readers import read_path
from napari_tumorseg.io.volume import Volume, volume_from_layer


def _world(vol: Volume, idx) -> np.ndarray:
    return (vol.affine @ np.array([*idx, 1.0]))[:3]


def test_cropped_field_of_view_overlays_its_source(shared_data):
    flair = read_path(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz")[0]
    off = np.array([10, 20, 30])
    crop_affine = flair.affine.copy()
    crop_affine[:3, 3] = _world(flair, off)
    z, y, x = off
    crop = Volume(flair.data[z:z + 40, y:y + 60, x:x + 50], flair.spacing, crop_affine, name="crop")

    _, kf, _ = flair.layer_data()
    _, kc, _ = crop.layer_data()
    # napari coordinate of a voxel = index * scale + translate; the same anatomy must match.
    idx_crop = np.array([5, 7, 9])
    napari_crop = idx_crop * np.array(kc["scale"]) + np.array(kc["translate"])
    napari_full = (idx_crop + off) * np.array(kf["scale"]) + np.array(kf["translate"])
    np.testing.assert_allclose(napari_crop, napari_full, atol=1e-6)
    assert np.any(np.abs(np.array(kc["translate"]) - np.array(kf["translate"])) > 1.0)


def test_layer_metadata_round_trips_to_a_volume(shared_data):
    roi = read_path(shared_data / "dicom_brainix" / "ROI")[0]
    data, kwargs, kind = roi.layer_data()
    back = volume_from_layer(data, kwargs["metadata"], kwargs["scale"], kwargs["name"], kind)
    np.testing.assert_allclose(back.affine, roi.affine)
    assert back.spacing == roi.spacing and back.source == roi.source
    assert back.metadata["dicom"].series_uid == roi.metadata["dicom"].series_uid
    np.testing.assert_allclose(back.translate(), roi.translate())


# --- io.volume and io.orientation: one import direction (issue 14) ---------------------

_PAIR = ("napari_tumorseg.io.volume", "napari_tumorseg.io.orientation")


@pytest.mark.parametrize("first", _PAIR)
def test_each_module_imports_first_in_a_fresh_process(first):
    import subprocess
    import sys

    other = next(m for m in _PAIR if m != first)
    code = f"import {first}, {other}; import {first} as a; print(a.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == first, proc.stderr


def _runtime_imports(module: str) -> set[str]:
    """Every napari_tumorseg module ``module`` imports at run time, at any depth of its code
    (function bodies included; ``if TYPE_CHECKING:`` blocks left out)."""
    import ast
    import importlib.util

    tree = ast.parse(open(importlib.util.find_spec(module).origin, encoding="utf-8").read())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("napari_tumorseg"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("napari_tumorseg")}
    return found


def test_volume_and_orientation_do_not_import_each_other():
    """io.volume uses io.orientation (napari's layer geometry); io.orientation must not import
    io.volume back, not even inside a function: that cycle made the import order matter."""
    volume, orientation = _PAIR
    assert orientation in _runtime_imports(volume)
    assert volume not in _runtime_imports(orientation)
