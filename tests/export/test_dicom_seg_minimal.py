"""DICOM-SEG from a minimal real-world series, and one provenance rule for the GUI and CLI.

Export used to fail on a series without PatientBirthDate and the other Type 2 attributes
("'FileDataset' object has no attribute 'PatientBirthDate'"); the Correct dock marked a
model's output MANUAL where ``tumorseg predict`` marked it SEMIAUTOMATIC.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_tumorseg.cli import main
from napari_tumorseg.export.dicom_seg import read_dicom_seg, segment_algorithm, write_dicom_seg
from napari_tumorseg.io.readers import read_path
from tests.hostile.conftest import unet_checkpoint  # noqa: F401 - the shared tiny checkpoint fixture
from tests.hostile.test_hostile_volumes import dicom_series

TYPE2 = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
         "StudyID", "AccessionNumber")


def _labels(vol):
    labels = np.zeros(vol.spatial_shape, np.uint8)
    labels[1:3, 4:10, 5:11] = 1
    return labels


def test_minimal_series_lacks_the_type2_attributes(tmp_path):
    folder = dicom_series(tmp_path / "minimal")
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))
    assert not any(k in ds for k in TYPE2 + ("SliceThickness",))


@pytest.mark.parametrize("missing_name", [False, True])
def test_export_from_a_minimal_series(tmp_path, missing_name):
    folder = dicom_series(tmp_path / "minimal")
    if missing_name:  # an anonymiser that dropped the name and ID as well (Type 2 too)
        for f in folder.glob("*.dcm"):
            ds = pydicom.dcmread(f)
            del ds.PatientName, ds.PatientID
            ds.save_as(f)
    vol = read_path(folder)[0]
    labels = _labels(vol)
    out = write_dicom_seg(labels, vol, tmp_path / "seg.dcm", algorithm="unet")
    seg = pydicom.dcmread(out)
    for keyword in TYPE2:
        assert keyword in seg and str(seg.get(keyword)) == ""  # present, written empty
    np.testing.assert_array_equal(read_dicom_seg(out, vol), labels)


@pytest.mark.parametrize("model, kind", [("unet", "SEMIAUTOMATIC"), (None, "MANUAL"), ("", "MANUAL")])
def test_one_rule_for_the_algorithm_type(tmp_path, model, kind):
    algo_type, algo_id = segment_algorithm(model)
    assert algo_type.value == kind
    assert (algo_id is None) == (kind == "MANUAL")
    vol = read_path(dicom_series(tmp_path / "s"))[0]
    seg = pydicom.dcmread(write_dicom_seg(_labels(vol), vol, tmp_path / "seg.dcm", algorithm=model))
    (segment,) = seg.SegmentSequence
    assert segment.SegmentAlgorithmType == kind
    if model:
        assert segment.SegmentAlgorithmName == model


def test_cli_predict_writes_the_rule_for_its_model(tmp_path, unet_checkpoint, capsys):
    folder = dicom_series(tmp_path / "minimal")
    out = tmp_path / "pred.dcm"
    # Threshold 0: every voxel is labelled, so an untrained model still gives a segment.
    assert main(["predict", str(unet_checkpoint), str(folder), "-o", str(out), "--threshold", "0",
                 "--quiet"]) == 0, capsys.readouterr().err
    (segment,) = pydicom.dcmread(out).SegmentSequence
    expected_type, expected_id = segment_algorithm("unet")
    assert segment.SegmentAlgorithmType == expected_type.value
    assert segment.SegmentAlgorithmName == expected_id[0].AlgorithmName == "unet"
