"""The rules that keep derived writes off the user's voxels (Qt-free)."""

import numpy as np
import pytest

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.user_edits import EditLedger, accept_into, merge_derived, result_problem


def _brats_truth(shared_data):
    from napari_tumorseg.io.nifti import read_nifti

    case = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    return np.asarray(read_nifti(case / "OTMultiClass.nii.gz").data)


def test_a_derived_rebuild_leaves_edited_voxels_alone(shared_data):
    truth = _brats_truth(shared_data)
    current = (truth > 0).astype(np.uint8)
    ledger = EditLedger(current.shape)
    # the user erases a corner of the lesion and paints a patch of background
    lesion = np.argwhere(current > 0)
    erased = tuple(lesion[:50].T)
    current[erased] = 0
    ledger.mark(erased)
    painted = (slice(10, 12), slice(5, 9), slice(5, 9))
    current[painted] = 1
    ledger.mark_box(painted, None)
    derived = np.zeros_like(current)  # a threshold at which nothing is tumour
    merged, kept = merge_derived(current, derived, ledger.mask)
    assert (merged[erased] == 0).all() and (merged[painted] == 1).all()
    assert np.count_nonzero(merged) == 2 * 4 * 4  # only the painted patch survives the empty map
    assert kept == 2 * 4 * 4
    assert current is not merged  # the input is never modified in place
    # no edits: the derived map as it is
    np.testing.assert_array_equal(merge_derived(current, derived, None)[0], derived)


def test_a_slice_range_rebuild_touches_only_its_slices():
    current = np.ones((6, 8, 8), np.uint8)
    edited = np.zeros(current.shape, bool)
    edited[2, 0, 0] = True
    merged, kept = merge_derived(current, np.zeros((2, 8, 8), np.uint8), edited, (slice(2, 4),))
    assert merged[[0, 1, 4, 5]].all() and merged[2, 0, 0] == 1 and kept == 1
    assert np.count_nonzero(merged[2:4]) == 1
    with pytest.raises(TumorSegError):
        merge_derived(current, np.zeros((3, 8, 8), np.uint8), edited, (slice(2, 4),))


def test_ledger_counts_generations_and_saves():
    ledger = EditLedger((2, 4, 4))
    assert not ledger.any and not ledger.unsaved
    ledger.mark((np.array([0]), np.array([1]), np.array([1])))
    box_mask = np.zeros((2, 2), bool)
    box_mask[0, 0] = True
    ledger.mark_box((slice(1, 2), slice(0, 2), slice(0, 2)), box_mask[None])
    assert ledger.any and ledger.unsaved and ledger.count == 2
    ledger.mark_saved()
    assert not ledger.unsaved
    ledger.resize((3, 4, 4))
    assert ledger.count == 0 and ledger.mask.shape == (3, 4, 4)


def test_accept_never_overwrites_another_label_unless_asked():
    target = np.zeros((1, 6, 6), np.uint8)
    target[0, :3] = 2  # another lesion / region
    mask = np.zeros(target.shape, bool)
    mask[0, 2:5] = True
    res = accept_into(target, mask, 1)
    assert (res.labels[0, :3] == 2).all() and (res.labels[0, 3:5] == 1).all()
    assert res.protected == 6 and res.written == 12
    forced = accept_into(target, mask, 1, overwrite_other=True)
    assert (forced.labels[0, 2:5] == 1).all() and forced.protected == 0
    # refining a prediction: the mask is the new extent, kept voxels keep their class
    refined = accept_into(target, mask, 1, replace=True)
    assert (refined.labels[0, :2] == 0).all() and (refined.labels[0, 2] == 2).all()
    assert (refined.labels[0, 3:5] == 1).all()
    with pytest.raises(TumorSegError, match="does not fit"):
        accept_into(target, mask, 300)
    with pytest.raises(TumorSegError, match="grid"):
        accept_into(target, mask[:, :3], 1)


def test_empty_and_whole_results_are_named():
    assert "lower threshold" in result_problem(0, 1000, 0.3, 0.5)
    assert "higher threshold" in result_problem(950, 1000, 0.99, 0.1)
    assert result_problem(100, 1000, 0.99, 0.5) == ""
