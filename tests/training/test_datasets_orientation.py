"""Training reads volumes as the viewer shows them, and refuses a label map that is elsewhere."""

from __future__ import annotations


import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.readers import read_path
from napari_tumorseg.training.datasets import open_source


def _case(shared_data, tmp_path, codes=None, shift=None):
    src = shared_data / "brats2012_hg0015"
    case = tmp_path / "case"
    case.mkdir()
    for name in ("FLAIR", "truth"):
        img = nib.load(src / f"BRATS_HG0015_{name}.nii.gz")
        if codes:
            t = nio.ornt_transform(nio.io_orientation(img.affine), nio.axcodes2ornt(tuple(codes)))
            img = img.as_reoriented(t)
        if shift is not None and name == "truth":
            affine = img.affine.copy()
            affine[:3, 3] += shift
            img = nib.Nifti1Image(np.asanyarray(img.dataobj), affine)
        nib.save(img, case / f"BRATS_HG0015_{name}.nii.gz")
    return case


def test_a_ras_stored_case_trains_in_the_display_order(shared_data, tmp_path):
    case = _case(shared_data, tmp_path, codes="RAS")
    (ref,) = open_source(case).refs
    data = ref.load()
    (shown,) = read_path(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz")
    np.testing.assert_array_equal(data.image[0], shown.data.astype(np.float32))


def test_a_label_map_elsewhere_is_refused(shared_data, tmp_path):
    case = _case(shared_data, tmp_path, shift=[0.0, 120.0, 0.0])
    (ref,) = open_source(case).refs
    with pytest.raises(TumorSegError, match="not on the grid of the scans: same size but a different place"):
        ref.load()
