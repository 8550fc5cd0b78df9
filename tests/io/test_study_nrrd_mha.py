"""Load study with NRRD and MetaImage files (issue 15): listed from their headers, opened on
their grid; a 3D Slicer .seg.nrrd is a mask that opens as labels with its segment names."""

from __future__ import annotations

import numpy as np

from napari_tumorseg.export import export_labels
from napari_tumorseg.io.readers import layer_data, read_path
from napari_tumorseg.io.study import Study

NAMES = {1: "necrotic core", 2: "oedema", 4: "enhancing tumour"}


def make_case(shared_data, folder):
    """A BraTS 2021 case as a NRRD user keeps it: FLAIR.nrrd and its truth as seg.nrrd."""
    from napari_tumorseg.cli import main

    src = shared_data / "brats_multi_year" / "BraTS2021_00002"
    folder.mkdir()
    assert main(["convert", str(src / "BraTS2021_00002_flair.nii.gz"), "-o", str(folder / "BraTS2021_00002_flair.nrrd")]) == 0
    (truth,) = read_path(src / "BraTS2021_00002_seg.nii.gz")
    export_labels(truth.data, None, folder / "BraTS2021_00002_seg.seg.nrrd", source=truth, names=NAMES)
    return folder, truth


def test_study_lists_and_opens_nrrd_with_segment_names(shared_data, tmp_path):
    folder, truth = make_case(shared_data, tmp_path / "BraTS2021_00002")
    study = Study.scan(folder)
    by_name = {e.name: e for e in study.entries}
    assert set(by_name) == {"BraTS2021_00002_flair", "BraTS2021_00002_seg"}
    flair, seg = by_name["BraTS2021_00002_flair"], by_name["BraTS2021_00002_seg"]
    assert flair.ticked and flair.kind == "image" and flair.layer_name == "FLAIR · BraTS2021_00002"
    assert not seg.ticked and seg.is_mask and seg.shape == (155, 240, 240)
    *_, opened = study.load([study.entries.index(flair), study.entries.index(seg)])
    image, labels = opened.volumes
    assert labels.kind == "labels" and labels.metadata["label_names"] == NAMES
    np.testing.assert_array_equal(labels.data, truth.data)
    np.testing.assert_allclose(labels.affine, image.affine, atol=1e-6)  # one grid
    (_, kwargs, kind), = layer_data([labels])
    assert kind == "labels" and kwargs["metadata"]["label_names"] == NAMES


def test_a_file_kept_in_two_formats_names_its_format(shared_data):
    entries = Study.scan(shared_data / "brats2012_hg0015").entries
    names = sorted(e.layer_name for e in entries if e.name == "BRATS_HG0015_FLAIR")
    assert names == ["FLAIR (MetaImage) · brats2012_hg0015", "FLAIR (NIfTI) · brats2012_hg0015"]
    # The dock shows which is which, and ticks the scan once (its NIfTI, as before).
    titles = {e.title: e.ticked for e in entries if e.name == "BRATS_HG0015_FLAIR"}
    assert titles == {"BRATS_HG0015_FLAIR (MetaImage)": False, "BRATS_HG0015_FLAIR (NIfTI)": True}
    assert all(not e.ticked for e in entries if e.name == "BRATS_HG0015_truth")
    assert sum(e.ticked for e in entries) == 4  # FLAIR, T1, T1c, T2
