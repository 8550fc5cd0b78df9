"""The npe2 reader and writer hooks, called directly (they are Qt-free; no viewer)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_tumorseg._reader import napari_get_reader
from napari_tumorseg._writer import write_image_nifti, write_image_tiff, write_labels_nifti, write_labels_tiff
from napari_tumorseg.errors import ReadError, WriteError
from napari_tumorseg.io.readers import read_path
from napari_tumorseg.io.orientation import world_from_index


@pytest.fixture(scope="module")
def brainix_layers(shared_data):
    reader = napari_get_reader(str(shared_data / "dicom_brainix"))
    assert callable(reader)
    return reader(str(shared_data / "dicom_brainix"))


def test_not_ours_returns_none(shared_data, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "settings.json").write_text('{"annotations": [], "theme": "dark"}')
    (tmp_path / "volume.zraw").write_bytes(b"x\x9c")  # an .mhd's data file: opened through its header
    for p in [tmp_path / "settings.json", tmp_path / "volume.zraw",
              tmp_path / "notes.txt", tmp_path / "empty", tmp_path / "missing.nii.gz"]:
        assert napari_get_reader(str(p)) is None, p
    # MetaImage and NRRD are ours since issue 15 (they were refused before).
    assert callable(napari_get_reader(str(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.mha")))


def test_dicom_folder_one_layer_per_series(brainix_layers):
    by_name = {kw["name"]: (data, kw, kind) for data, kw, kind in brainix_layers}
    assert set(by_name) == {"sT2W/FLAIR", "sT2/TSE/T", "FLAIR_ROI"}
    flair, roi = by_name["sT2W/FLAIR"], by_name["FLAIR_ROI"]
    assert flair[2] == "image" and roi[2] == "labels"
    assert flair[0].shape == roi[0].shape == (22, 288, 288)
    np.testing.assert_allclose(flair[1]["scale"][1:], [0.79861110448837] * 2)
    meta = roi[1]["metadata"]
    assert meta["dicom"].series_uid and meta["dicom"].frame_of_reference_uid
    assert meta["dicom"].frame_of_reference_uid == flair[1]["metadata"]["dicom"].frame_of_reference_uid
    np.testing.assert_allclose(meta["tumorseg"]["affine"], flair[1]["metadata"]["tumorseg"]["affine"], atol=1e-3)
    assert int(roi[0].sum()) > 0


def test_several_files_at_once(shared_data):
    paths = [str(shared_data / "brats2012_hg0015" / f"BRATS_HG0015_{s}.nii.gz") for s in ("FLAIR", "truth")]
    layers = napari_get_reader(paths)(paths)
    assert [kind for _, _, kind in layers] == ["image", "labels"]


def test_broken_file_of_ours_raises(tmp_path):
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 50)
    reader = napari_get_reader(str(bad))
    assert callable(reader)  # the name says NIfTI, so it is ours to explain
    with pytest.raises(ReadError, match="scan.nii.gz"):
        reader(str(bad))


def test_labels_to_nifti_keeps_dicom_geometry(brainix_layers, tmp_path):
    data, kw, _ = next(t for t in brainix_layers if t[1]["name"] == "FLAIR_ROI")
    (out,) = write_labels_nifti(str(tmp_path / "roi.nii.gz"), data, kw)
    (back,) = read_path(out)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.affine, kw["metadata"]["tumorseg"]["affine"], atol=1e-5)
    # the affine is oblique (BRAINIX is tilted): not something a scale alone could give
    assert abs(back.affine[0, 0]) > 1e-3 or abs(back.affine[2, 1]) > 1e-3


def test_image_to_nifti_without_source_uses_scale_and_translate(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    meta = {"name": "x", "scale": (5.0, 0.5, 0.25), "translate": (10.0, 20.0, 30.0), "metadata": {}}
    (out,) = write_image_nifti(str(tmp_path / "x.nii"), data, meta)
    (back,) = read_path(out)
    np.testing.assert_array_equal(back.data, data)
    assert back.spacing == (5.0, 0.5, 0.25)
    # voxel (z, y, x) = (1, 2, 3) sits at translate + index * scale in napari's world frame
    # (I, P, L mm), i.e. at RAS (-L, -P, -I), and the file reopens there
    np.testing.assert_allclose(world_from_index(back.affine, (1, 2, 3)), [15.0, 21.0, 30.75])
    np.testing.assert_allclose(back.affine @ [1, 2, 3, 1], [-30.75, -21.0, -15.0, 1.0])


def test_labels_tiff_stack_and_slices(brainix_layers, tmp_path):
    data, kw, _ = next(t for t in brainix_layers if t[1]["name"] == "FLAIR_ROI")
    (stack,) = write_labels_tiff(str(tmp_path / "roi.tif"), data, kw)
    np.testing.assert_array_equal(tifffile.imread(stack), data)
    (back,) = read_path(stack)
    np.testing.assert_allclose(back.spacing, kw["scale"], rtol=1e-6)

    files = write_labels_tiff(str(tmp_path / "roi_slices"), data, kw)
    assert len(files) == 22 and files[0].endswith("FLAIR_ROI_001.tif")
    np.testing.assert_array_equal(np.stack([tifffile.imread(f) for f in files]), data)
    # a folder target never replaces existing slices
    with pytest.raises(WriteError, match="exists"):
        write_labels_tiff(str(tmp_path / "roi_slices"), data, kw)
    # a single file confirmed in napari's save dialog is replaced (atomically)
    (again,) = write_labels_tiff(str(tmp_path / "roi.tif"), np.zeros_like(data), kw)
    assert tifffile.imread(again).max() == 0


def test_image_tiff_rgb_layer(shared_data, tmp_path):
    rgb = tifffile.imread(shared_data / "lgg_kaggle3m" / "TCGA_CS_4941_19960909" / "TCGA_CS_4941_19960909_12.tif")
    (out,) = write_image_tiff(str(tmp_path / "rgb.tif"), rgb, {"name": "rgb", "rgb": True, "scale": (1.0, 1.0)})
    (back,) = read_path(out)
    assert back.data.shape == (3, 1, 256, 256)
    np.testing.assert_array_equal(back.data[:, 0], np.moveaxis(rgb, -1, 0))


def test_float_labels_are_refused(tmp_path):
    with pytest.raises(WriteError, match="integers"):
        write_labels_nifti(str(tmp_path / "x.nii.gz"), np.zeros((2, 3, 4), np.float32), {"scale": (1, 1, 1)})
    assert not any(tmp_path.iterdir())


# --- File -> Open: a refusal is one line, and the reader stays Qt-free (issue 14) --------

_PROBE = """
import sys
from napari_tumorseg._reader import napari_get_reader
loaded = lambda: sorted(m for m in sys.modules
                        if m.startswith(("napari_tumorseg.widgets", "qtpy", "PyQt5", "PySide", "napari._qt")))
after_import = loaded()
path = sys.argv[1]
layers = napari_get_reader(path)(path)
assert [kind for _, _, kind in layers] == ["labels"], layers
bad = sys.argv[2]
try:
    napari_get_reader(bad)(bad)
except Exception as err:  # no viewer: the one-line error is raised for the script to see
    print("refused:", err)
print("after import:", after_import)
print("after reading:", loaded())
"""


def test_the_reader_never_loads_the_widgets_or_qt(shared_data, tmp_path):
    """napari may load the reader without any dock: it must not drag in the widgets package
    (and with it Qt), neither on import nor while reading, success or failure."""
    import subprocess
    import sys

    bad = tmp_path / "x.dcm"
    bad.write_text("notes\n")
    truth = shared_data / "brats2012_hg0015" / "BRATS_HG0015_truth.nii.gz"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(truth), str(bad)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out == ["refused: x.dcm: not a DICOM file", "after import: []", "after reading: []"], proc.stdout


def test_refusal_line_names_the_file_only(tmp_path):
    from napari_tumorseg._reader import refusal_line

    deep = tmp_path / "Doe_Jane_private" / "study 7" / "scan.nii.gz"
    err = ReadError(f"{deep}: damaged NIfTI data (unexpected end)\nsecond line")
    assert refusal_line(err, [str(deep)]) == "scan.nii.gz: damaged NIfTI data (unexpected end) second line"
    err = ReadError(f"no readable DICOM image series in {deep.parent}: unreadable (no pixel data): IM-1.dcm")
    line = refusal_line(err, [str(deep.parent)])
    assert "Doe_Jane" not in line and str(tmp_path) not in line and "study 7" in line
    # a file below the folder that was opened: the file's name, not its folders
    err = ReadError(f'scan.nii.gz: unreadable (cannot work out the type of "{deep}")')
    line = refusal_line(err, [str(deep.parent.parent)])
    assert line == 'Doe_Jane_private: scan.nii.gz: unreadable (cannot work out the type of "scan.nii.gz")'
    # a library's text about a header value is masked; the file is named when the text did not
    line = refusal_line(ValueError("bad value Doe^Jane on 20061201"), [str(deep)])
    assert line.startswith("scan.nii.gz: ValueError") and "Doe" not in line and "20061201" not in line


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    return lambda: notification_manager.records[start:]


def _tree(tmp_path):
    folder = tmp_path / "Doe_Jane_private" / "scans"
    folder.mkdir(parents=True)
    (folder / "x.dcm").write_text("meeting notes, not an image\n")
    (folder / "scan.nii.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 50)
    return folder


@pytest.mark.gui
@pytest.mark.parametrize("name, why", [("x.dcm", "x.dcm: not a DICOM file"), ("scan.nii.gz", "scan.nii.gz: ")])
def test_file_open_refusal_is_one_line_without_path_or_traceback(make_napari_viewer, tmp_path, notifications,
                                                                  name, why):
    from napari.utils.notifications import ErrorNotification

    viewer = make_napari_viewer()
    path = _tree(tmp_path) / name
    assert viewer.open(str(path), plugin="napari-tumorseg") == []  # no exception reaches napari
    said = notifications()
    assert len(said) == 1, [str(n.message) for n in said]
    (note,) = said
    message = str(note.message)
    assert message.startswith(why) and "\n" not in message
    assert "Doe_Jane" not in message and str(tmp_path) not in message
    assert not isinstance(note, ErrorNotification)  # an ErrorNotification carries the traceback
    assert len(viewer.layers) == 0


@pytest.mark.gui
def test_file_open_outlines_a_mask_without_any_dock(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    (roi,) = viewer.open(str(shared_data / "dicom_brainix" / "ROI"), plugin="napari-tumorseg")
    assert type(roi).__name__ == "Labels" and roi.contour == 2
    assert "tumorseg_display" not in roi.metadata
