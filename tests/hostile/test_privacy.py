"""No patient identifier (name, ID, birth date, study date, accession number, UIDs) in any
line the command line prints, whatever goes wrong with a DICOM study.

File and folder names are the user's own and may appear; header values never do.
"""

from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest

from tests.hostile.conftest import run_cli
from tests.hostile.test_hostile_volumes import dicom_series

IDENTITY = {
    "PatientName": "Doe^Jane", "PatientID": "PID-4711", "PatientBirthDate": "19700101",
    "StudyDate": "20240102", "StudyTime": "101500", "AccessionNumber": "ACC99X",
    "ReferringPhysicianName": "Who^Doctor",
}


def _series(folder, **attrs):
    folder = dicom_series(folder, **{**IDENTITY, **attrs})
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))
    secrets = list(IDENTITY.values()) + ["Doe", "Jane", str(ds.StudyInstanceUID),
                                        str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                                        str(ds.FrameOfReferenceUID)]
    return folder, secrets


def _broken_spacing(tmp_path):
    folder, secrets = _series(tmp_path / "study", PixelSpacing=[0, 0])
    return [["info", folder], ["convert", folder, "-o", tmp_path / "o.nii.gz"]], secrets


def _truncated(tmp_path):
    folder, secrets = _series(tmp_path / "study")
    f = folder / "IM0002.dcm"
    f.write_bytes(f.read_bytes()[:-100])
    return [["convert", folder, "-o", tmp_path / "o.nii.gz"], ["info", folder]], secrets


def _garbage_header(tmp_path):
    folder, secrets = _series(tmp_path / "study")
    f = folder / "IM0001.dcm"
    raw = bytearray(f.read_bytes())
    raw[200:260] = b"\xff" * 60  # a damaged element header amid the patient module
    f.write_bytes(bytes(raw))
    return [["convert", folder, "-o", tmp_path / "o.nii.gz"]], secrets


def _existing_output(tmp_path):
    folder, secrets = _series(tmp_path / "study")
    (tmp_path / "o.nii.gz").write_text("x")
    return [["convert", folder, "-o", tmp_path / "o.nii.gz"]], secrets


def _evaluate_other_grid(tmp_path):
    import nibabel as nib

    folder, secrets = _series(tmp_path / "study")
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), tmp_path / "gt_seg.nii.gz")
    return [["evaluate", folder, tmp_path / "gt_seg.nii.gz"], ["evaluate", tmp_path / "gt_seg.nii.gz", folder]], secrets


SCENARIOS = {
    "broken spacing": _broken_spacing,
    "truncated slice": _truncated,
    "garbage header": _garbage_header,
    "existing output": _existing_output,
    "evaluate other grid": _evaluate_other_grid,
}


def _assert_private(text: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, f"{leaked} leaked into: {text!r}"


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_no_identifier_in_cli_output(tmp_path, capsys, caplog, scenario):
    caplog.set_level(logging.DEBUG)
    commands, secrets = scenario(tmp_path)
    for argv in commands:
        code, out, err = run_cli(argv, capsys)
        assert "Traceback" not in err
        _assert_private(out + err, secrets)
    _assert_private(caplog.text, secrets)


@pytest.mark.parametrize("threshold", ["1", "0"])
def test_no_identifier_when_exporting_dicom_seg(tmp_path, capsys, caplog, unet_checkpoint, threshold):
    caplog.set_level(logging.DEBUG)
    folder, secrets = _series(tmp_path / "study")
    code, out, err = run_cli(["predict", unet_checkpoint, folder, "-o", tmp_path / "seg.dcm",
                              "--threshold", threshold, "--quiet"], capsys)
    assert code == (2 if threshold == "1" else 0), err  # threshold 1: nothing labelled, refused
    _assert_private(out + err + caplog.text, secrets)


def test_internal_errors_mask_header_values(tmp_path, capsys, monkeypatch):
    """A bug whose library message quotes the header: one masked line, no traceback."""
    import napari_tumorseg.cli.info as info

    folder, secrets = _series(tmp_path / "study")
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))

    def crash(path):
        raise ValueError(f"bad element in {ds.PatientName} of {ds.StudyDate} ({ds.SOPInstanceUID})")

    monkeypatch.setattr(info, "describe", crash)
    code, out, err = run_cli(["info", folder], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "internal error" in err
    _assert_private(out + err, ["Doe^Jane", "20240102", str(ds.SOPInstanceUID)])
