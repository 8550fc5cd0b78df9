"""The DICOM scan parses each classic file's header once, up to group 0028, and finds its
pixels at the file's end (issue 15, "speed back"): same series, same voxels, and a full
parse only where the layout asks for one."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

import napari_tumorseg.io.dicom as dicom
from napari_tumorseg.io.dicom import DicomWarning, load_dicom_series, scan_dicom


@pytest.fixture(scope="module")
def flair(shared_data) -> Path:
    return shared_data / "dicom_brainix" / "FLAIR"


def _full_parse_info(path: Path):
    ds = pydicom.dcmread(path, defer_size=dicom._DEFER_BYTES, force=True)
    return dicom._info_from_dataset(path, ds, path.stat().st_size)


def _load(folder: Path):
    series, _ = scan_dicom(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        return series, load_dicom_series(series[0])


def test_fast_header_equals_pydicoms_full_parse(flair):
    # Every value the scan keeps (UIDs, geometry, rescale, pixel format, the pixel offset)
    # is what pydicom's complete parse and conversion give.
    for path in sorted(flair.iterdir()):
        assert asdict(dicom._read_header(path)) == asdict(_full_parse_info(path)), path.name


def _refuse(*args, **kwargs):
    raise AssertionError("full parse")


def test_classic_files_are_never_parsed_in_full(flair, monkeypatch):
    # The old scan called dcmread on every file (and read each file's whole header).
    monkeypatch.setattr(pydicom, "dcmread", _refuse)
    series, volume = _load(flair)
    assert volume.data.shape == (22, 288, 288)
    monkeypatch.undo()
    ref = np.stack([pydicom.dcmread(f).pixel_array for f in sorted(flair.iterdir())])
    assert {volume.data[z].tobytes() for z in range(22)} == {ref[z].tobytes() for z in range(22)}


def _copies(flair: Path, out: Path, edit) -> Path:
    out.mkdir()
    for path in sorted(flair.iterdir())[:4]:
        ds = pydicom.dcmread(path)
        edit(ds)
        ds.save_as(out / path.name, enforce_file_format=ds.file_meta.TransferSyntaxUID != ImplicitVRLittleEndian)
    return out


def test_trailing_padding_falls_back_to_the_full_parse(flair, tmp_path):
    def pad(ds):
        ds.add_new(0xFFFCFFFC, "OB", b"\0" * 16)  # Data Set Trailing Padding after the pixels

    folder = _copies(flair, tmp_path / "padded", pad)
    _, volume = _load(folder)
    ref = {pydicom.dcmread(f).pixel_array.tobytes() for f in folder.iterdir()}
    assert {volume.data[z].tobytes() for z in range(4)} == ref


def test_implicit_vr_files_take_the_fast_path(flair, tmp_path, monkeypatch):
    def implicit(ds):
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian

    folder = _copies(flair, tmp_path / "implicit", implicit)
    expected = {pydicom.dcmread(f).pixel_array.tobytes() for f in folder.iterdir()}
    monkeypatch.setattr(pydicom, "dcmread", _refuse)
    _, volume = _load(folder)
    assert {volume.data[z].tobytes() for z in range(4)} == expected


def test_a_cut_file_is_still_named_truncated(flair, tmp_path):
    folder = tmp_path / "cut"
    shutil.copytree(flair, folder)
    victim = sorted(folder.iterdir())[5]
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-1000])
    series, notes = scan_dicom(folder)
    assert series[0].n_slices == 21
    assert any("truncated" in n and victim.name in n for n in notes)
