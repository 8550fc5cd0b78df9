"""BraTS conventions on real label maps: regions per convention, the region map and its colours."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_tumorseg.brats import (
    CORE,
    EDEMA,
    ENHANCING,
    REGION_COLORS,
    REGION_LABEL_NAMES,
    drop_coreless_components,
    guess_convention,
    labels_to_regions,
    regions_to_labels,
    with_region,
)
from napari_tumorseg.errors import TumorSegError


@pytest.fixture(scope="module")
def brats2013_labels(shared_data) -> np.ndarray:
    path = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    lab = np.asarray(nib.load(path / "OTMultiClass.nii.gz").dataobj).astype(np.uint8)
    return lab[ndimage.find_objects((lab > 0).astype(np.uint8))[0]]


def test_brats_regions_from_real_labels(shared_data):
    lab = np.asarray(nib.load(shared_data / "brats2013_deepmedic/train/brats_2013_pat0005_1/OTMultiClass.nii.gz").dataobj)
    lab = np.round(lab).astype(int)
    assert guess_convention(np.unique(lab)) == "brats"
    wt, tc, et = labels_to_regions(lab, "brats")
    assert np.array_equal(wt, lab > 0)
    assert np.array_equal(tc, np.isin(lab, [1, 3, 4]))
    assert np.array_equal(et, lab == 4)
    assert et.sum() <= tc.sum() <= wt.sum() and et.any()
    truth = np.asarray(nib.load(shared_data / "brats2012_hg0015/BRATS_HG0015_truth.nii.gz").dataobj).astype(int)
    assert guess_convention(np.unique(truth)) == "brats2012"
    wt12, tc12, et12 = labels_to_regions(truth, "brats2012")
    assert np.array_equal(wt12, truth > 0) and np.array_equal(tc12, truth == 2)
    assert np.array_equal(et12, tc12)
    with pytest.raises(TumorSegError, match="brats1999"):
        labels_to_regions(lab, "brats1999")


def test_brats2023_numbering_moves_enhancing_to_three(brats2013_labels):
    # The 2023 edition renumbers 4 (ET) to 3: the same regions must come out.
    lab = brats2013_labels.astype(np.int64)
    renumbered = np.select([lab == 4, lab == 3], [3, 0], lab)  # 2013's 3 does not exist in 2023
    ref = labels_to_regions(np.where(lab == 3, 0, lab), "brats")
    np.testing.assert_array_equal(labels_to_regions(renumbered, "brats2023"), ref)


def test_regions_round_trip_on_brats2013(brats2013_labels):
    lab = brats2013_labels
    # BraTS 2013: 1 necrosis, 2 edema, 3 non-enhancing, 4 enhancing.
    wt, tc, et = lab > 0, np.isin(lab, (1, 3, 4)), lab == 4
    probs = np.stack([wt, tc, et]).astype(np.float32) * 0.8 + 0.1
    out = regions_to_labels(probs, 0.5)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out == EDEMA, wt & ~tc)
    np.testing.assert_array_equal(out == CORE, tc & ~et)
    np.testing.assert_array_equal(out == ENHANCING, et)
    # The region map is a convention of its own: it gives the same regions back.
    np.testing.assert_array_equal(labels_to_regions(out, "regionmap"), np.stack([wt, tc, et]))
    assert set(REGION_LABEL_NAMES) == {0, EDEMA, CORE, ENHANCING}
    # Raising the threshold above every probability empties the map.
    assert not regions_to_labels(probs, 0.95).any()
    with pytest.raises(TumorSegError, match="region channels"):
        regions_to_labels(np.zeros((2, 4, 4)))
    with pytest.raises(TumorSegError, match="threshold"):
        regions_to_labels(probs, 1.5)


def test_region_colors_are_a_napari_colormap():
    from napari.utils.colormaps import DirectLabelColormap

    cmap = DirectLabelColormap(color_dict=REGION_COLORS)
    mapped = cmap.map(np.array([0, EDEMA, CORE, ENHANCING], np.uint8))
    np.testing.assert_allclose(mapped[1], REGION_COLORS[EDEMA], atol=1e-6)
    np.testing.assert_allclose(mapped[3], REGION_COLORS[ENHANCING], atol=1e-6)
    assert mapped[0][3] == 0


def test_oedema_without_a_core_is_dropped_and_a_small_cored_lesion_stays(shared_data):
    case = shared_data / "brats_multi_year" / "BraTS2021_00006"
    seg = np.asarray(nib.load(case / "BraTS2021_00006_seg.nii.gz").dataobj).astype(np.uint8)
    wt, tc, et = labels_to_regions(seg, "brats")
    truth = np.zeros(seg.shape, np.uint8)
    truth[wt], truth[tc], truth[et] = EDEMA, CORE, ENHANCING
    out, dropped = drop_coreless_components(truth)
    # The raters' own map has no oedema without a core: the rule takes nothing from it.
    assert dropped == 0 and np.array_equal(out, truth)

    # Far from the tumour: an oedema island (goes), a 3-voxel enhancing spot (a small
    # metastasis: stays) and a 2 mL oedema blob around one core voxel (stays, whole).
    spiked = out.copy()
    free = np.argwhere(ndimage.binary_dilation(truth > 0, iterations=20) == 0)
    z, y, x = free[len(free) // 3]
    spiked[z:z + 4, y:y + 4, x:x + 4] = EDEMA
    z2, y2, x2 = free[2 * len(free) // 3]
    spiked[z2, y2, x2:x2 + 3] = ENHANCING
    z3, y3, x3 = free[len(free) // 2]
    spiked[z3:z3 + 12, y3:y3 + 12, x3:x3 + 12] = EDEMA
    spiked[z3 + 6, y3 + 6, x3 + 6] = CORE
    clean, n = drop_coreless_components(spiked)
    assert n == 1 and not clean[z:z + 4, y:y + 4, x:x + 4].any()
    assert (clean[z2, y2, x2:x2 + 3] == ENHANCING).all()
    assert (clean[z3:z3 + 12, y3:y3 + 12, x3:x3 + 12] > 0).all()
    assert np.array_equal(clean[out > 0], out[out > 0])  # the tumour itself untouched
    assert spiked[z, y, x] == EDEMA  # a new array: the input is not changed

    # No core anywhere (a model that saw only oedema): nothing is dropped; one slice works too.
    only_oedema = np.where(spiked > 0, EDEMA, 0).astype(np.uint8)
    assert drop_coreless_components(only_oedema)[1] == 0
    plane = spiked[z]
    plane_clean, n2 = drop_coreless_components(plane)
    assert plane_clean.ndim == 2 and (n2 == 0 or not plane_clean[y:y + 4, x:x + 4].any())


@pytest.mark.parametrize("convention", ["regionmap", "brats"])
@pytest.mark.parametrize("region", ["WT", "TC", "ET"])
def test_a_corrected_region_keeps_the_nesting(brats2013_labels, region, convention):
    """A region set to a corrected extent (half of it removed, a ball added beside it) is
    exactly that extent; the other regions follow only where nesting forces them. The map
    keeps its own label values (the plugin's region map, or BraTS 2013's 1-4 as loaded)."""
    lab = (regions_to_labels(labels_to_regions(brats2013_labels, "brats")) if convention == "regionmap"
           else brats2013_labels.copy())
    wt, tc, et = labels_to_regions(lab, convention)
    old = {"WT": wt, "TC": tc, "ET": et}[region]
    assert old.any()
    zs = np.nonzero(old.any(axis=(1, 2)))[0]
    mask = old.copy()
    mask[: zs[len(zs) // 2]] = False  # the correction removes the upper half
    zz, yy, xx = np.indices(lab.shape)
    c = np.argwhere(old)[0]
    ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 25
    mask |= ball  # and adds a ball round its first voxel
    new, changed = with_region(lab, region, mask, convention)
    assert new.dtype == lab.dtype and changed == int((new != lab).sum()) > 0
    assert set(np.unique(new)) <= set(np.unique(lab)) | {0}, "no value foreign to the convention"
    nwt, ntc, net = labels_to_regions(new, convention)
    assert np.array_equal({"WT": nwt, "TC": ntc, "ET": net}[region], mask)
    assert (net <= ntc).all() and (ntc <= nwt).all(), "ET inside TC inside WT"
    if region == "WT":  # the inner regions keep what stays tumour
        assert np.array_equal(ntc, tc & mask) and np.array_equal(net, et & mask)
    if region == "TC":  # the tumour keeps its extent, plus what the core grew into
        assert np.array_equal(nwt, wt | mask) and np.array_equal(net, et & mask)
    if region == "ET":  # removed enhancing voxels stay core
        assert np.array_equal(nwt, wt | mask) and np.array_equal(ntc, tc | mask)
    untouched = ~(old | mask)
    np.testing.assert_array_equal(new[untouched], lab[untouched])
    with pytest.raises(TumorSegError, match="grid"):
        with_region(lab, region, mask[1:], convention)


def test_a_maps_label_names_say_its_convention_before_its_values():
    """A region map's 1 / 2 / 3 are oedema / core / enhancing; BraTS 2023's are core / oedema /
    enhancing: the names decide, then the file's name, then the values."""
    from napari_tumorseg.brats import REGION_LABEL_NAMES, convention_from_label_names, convention_of_map

    assert convention_from_label_names(REGION_LABEL_NAMES) == "regionmap"
    assert convention_from_label_names({1: "NCR necrotic core", 2: "ED edema", 3: "ET enhancing"}) == "brats2023"
    # 2017-2021 maps name 1, 2 and 4 only
    assert convention_from_label_names({1: "necrotic core", 2: "peritumoral edema", 4: "enhancing"}) == "brats"
    assert convention_from_label_names({1: "tumour"}) is None
    assert convention_from_label_names(None) is None
    assert convention_of_map((0, 3), REGION_LABEL_NAMES, ["BraTS-GLI-00000-000-seg"]) == "regionmap"
    assert convention_of_map((0, 3), None, ["BraTS-GLI-00000-000-seg"]) == "brats2023"
    assert convention_of_map((0, 2), None, ["mask"]) == "brats2012"
    assert convention_of_map((0, 4), {1: "tumour"}, ["mask"]) == "brats"
