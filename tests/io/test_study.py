"""The Load study model: what the scan finds reaches the entries the dock lists."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from napari_tumorseg.io.nifti import is_label_name
from napari_tumorseg.io.readers import layer_data
from napari_tumorseg.io.study import Opened, Study, case_of


def test_a_slice_gap_found_by_the_scan_reaches_the_study_entry(shared_data, tmp_path):
    files = sorted((shared_data / "dicom_brainix" / "FLAIR").glob("*.dcm"))
    for f in files[:10] + files[11:]:
        shutil.copy(f, tmp_path / f.name)
    (entry,) = Study.scan(tmp_path).entries
    assert entry.shape[0] == 21
    assert len(entry.warnings) == 1 and "gap of 12.00 mm" in entry.warnings[0]


def test_a_complete_series_has_no_warning(shared_data):
    entries = Study.scan(shared_data / "dicom_brainix" / "FLAIR").entries
    assert [e.warnings for e in entries] == [[]]


# --- scans ticked, masks offered as masks, layers named "<sequence> · <case>" (issue 14) ---

def _loaded(study, indices, as_channels=False) -> Opened:
    *_, opened = study.load(indices, as_channels=as_channels)
    return opened


@pytest.mark.parametrize("folder", ["brats2013_deepmedic/validation/brats_2013_pat0003_1", "brats2012_hg0015",
                                    "brats_multi_year", "dicom_brainix", "lgg_kaggle3m"])
def test_scans_are_ticked_and_masks_are_not(shared_data, folder):
    entries = Study.scan(shared_data / folder).entries
    masks = [e for e in entries if e.kind == "labels" or is_label_name(e.name)]
    assert masks, "every one of these studies holds a mask"
    assert all(not e.ticked for e in masks)  # ground truth, brain mask, ROI, seg
    # Every scan, once: a copy in another format (brats2012's original .mha) is listed unticked.
    assert all(e.ticked != e.copy for e in entries if e not in masks)


def test_layer_names_say_sequence_and_case(shared_data):
    names = {e.name: e.layer_name for e in Study.scan(shared_data / "brats2013_deepmedic" / "validation"
                                                      / "brats_2013_pat0003_1").entries}
    assert names == {
        "Flair_subtrMeanDivStd": "FLAIR · brats_2013_pat0003_1",
        "T1c_subtrMeanDivStd": "T1c · brats_2013_pat0003_1",
        "OTMultiClass": "OTMultiClass · brats_2013_pat0003_1",
        "brainmask": "brainmask · brats_2013_pat0003_1",
    }
    names = {e.name: e.layer_name for e in Study.scan(shared_data / "brats_multi_year" / "BraTS2021_00002").entries}
    assert names["BraTS2021_00002_t1ce"] == "T1c · BraTS2021_00002"
    assert names["BraTS2021_00002_seg"] == "seg · BraTS2021_00002"
    names = {e.name: e.layer_name for e in Study.scan(shared_data / "dicom_brainix").entries}
    assert names == {"sT2W/FLAIR": "FLAIR · dicom_brainix", "sT2/TSE/T": "T2 · dicom_brainix",
                     "FLAIR_ROI": "FLAIR_ROI · dicom_brainix"}
    # A per-series folder is not the case: the study folder above it is.
    assert case_of(shared_data / "dicom_brainix" / "FLAIR") == "dicom_brainix"
    assert case_of(shared_data / "dicom_brainix" / "ROI" / "IM-0001-0001.dcm") == "dicom_brainix"


def test_as_channels_makes_one_case_per_case_folder_and_leaves_masks_alone(shared_data):
    study = Study.scan(shared_data / "brats2013_deepmedic" / "validation")
    ticked = [i for i, e in enumerate(study.entries) if e.ticked]
    opened = _loaded(study, ticked, as_channels=True)
    assert [v.name for v in opened.volumes] == ["brats_2013_pat0003_1", "brats_2013_pat0004_1"]
    assert all(v.channel_names == ["FLAIR", "T1c"] for v in opened.volumes) and not opened.notes
    names = [kw["name"] for _, kw, _ in layer_data(opened.volumes)]
    assert names == [["FLAIR · brats_2013_pat0003_1", "T1c · brats_2013_pat0003_1"],
                     ["FLAIR · brats_2013_pat0004_1", "T1c · brats_2013_pat0004_1"]]
    # A mask the user ticks as well is a labels volume beside the case, not a channel.
    truth = next(i for i, e in enumerate(study.entries) if e.name == "OTMultiClass")
    opened = _loaded(study, ticked[:2] + [truth], as_channels=True)
    assert [(v.name, v.kind) for v in opened.volumes] == [
        ("brats_2013_pat0003_1", "image"), ("OTMultiClass · brats_2013_pat0003_1", "labels")]


def test_a_case_on_two_grids_opens_scan_by_scan_with_one_note(shared_data):
    study = Study.scan(shared_data / "dicom_brainix")
    opened = _loaded(study, [i for i, e in enumerate(study.entries) if e.ticked], as_channels=True)
    assert sorted(v.name for v in opened.volumes) == ["FLAIR · dicom_brainix", "T2 · dicom_brainix"]
    (note,) = opened.notes
    assert note.startswith("dicom_brainix: opened the series separately") and "FLAIR" in note


def test_a_mask_name_without_label_values_is_said_once(tmp_path):
    case = tmp_path / "case_07"
    case.mkdir()
    scan = np.random.default_rng(0).normal(size=(8, 9, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(scan, np.eye(4)), case / "case_07_flair.nii.gz")
    nib.save(nib.Nifti1Image(scan * 100, np.eye(4)), case / "case_07_brain_mask.nii.gz")  # not labels
    study = Study.scan(case)
    by_name = {e.name: e for e in study.entries}
    mask = by_name["case_07_brain_mask"]
    assert not mask.ticked and mask.layer_name == "brain_mask · case_07"
    opened = _loaded(study, [study.entries.index(mask)])
    (volume,) = opened.volumes
    assert volume.kind == "image" and opened.notes == [
        "brain_mask · case_07: named like a mask but holds no label values; opened as an image"]
