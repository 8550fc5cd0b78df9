"""A corrected case becomes training data with every channel and its world geometry."""

import numpy as np
import pytest

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.io.orientation import to_display
from napari_tumorseg.io.readers import read_path
from napari_tumorseg.io.volume import Volume
from napari_tumorseg.training.corrected_cases import add_corrected_case
from napari_tumorseg.training.datasets import open_source


@pytest.fixture(scope="module")
def case(shared_data):
    folder = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    flair = to_display(read_path(folder / "Flair_subtrMeanDivStd.nii.gz")[0])
    t1c = to_display(read_path(folder / "T1c_subtrMeanDivStd.nii.gz")[0])
    truth = to_display(read_path(folder / "OTMultiClass.nii.gz")[0])
    vol = Volume(np.stack([flair.data, t1c.data]), spacing=flair.spacing, affine=flair.affine, name="case",
                 channel_names=["FLAIR", "T1c"])
    return vol, (np.asarray(truth.data) > 0).astype(np.uint8)


def test_every_channel_and_the_affine_reach_the_trainer(case, tmp_path):
    vol, labels = case
    files = add_corrected_case(tmp_path, vol, labels, stem="pat")
    assert [p.name for p in files] == ["FLAIR.nii.gz", "T1c.nii.gz", "pat_001_seg.nii.gz"]
    source = open_source(tmp_path)
    assert source.kind == "nifti" and len(source.refs) == 1
    data = source.refs[0].load()
    assert data.image.shape == (2, *labels.shape)
    assert [n.lower() for n in data.channel_names] == ["flair", "t1c"]
    np.testing.assert_array_equal(data.labels > 0, labels > 0)
    np.testing.assert_allclose(data.image[1], vol.data[1].astype(np.float32))
    # the files sit where the scan sits in the scanner
    back = read_path(files[0])[0]
    np.testing.assert_allclose(to_display(back).affine, vol.affine, atol=1e-5)
    # a second case never replaces the first
    again = add_corrected_case(tmp_path, vol, labels, stem="pat")
    assert again[0].parent.name == "pat_002" and files[0].exists()


def test_bad_labels_are_refused_and_nothing_is_left(case, tmp_path):
    vol, labels = case
    with pytest.raises(TumorSegError, match="grid"):
        add_corrected_case(tmp_path, vol, labels[:, :10])
    with pytest.raises(TumorSegError, match="empty"):
        add_corrected_case(tmp_path, vol, np.zeros_like(labels))
    assert list(tmp_path.iterdir()) == []


def test_a_corrected_region_map_is_trained_as_one(shared_data, tmp_path):
    """A corrected prediction of the starter (1 oedema, 2 core, 3 enhancing) added to a training
    set keeps its label names: the trainer reads its core as core. By its values alone it is
    BraTS 2023's 1 / 2 / 3 (core / oedema / enhancing), its oedema taught as core."""
    from napari_tumorseg.brats import REGION_LABEL_NAMES, labels_to_regions, regions_to_labels

    folder = shared_data / "brats2013_deepmedic" / "validation" / "brats_2013_pat0003_1"
    flair = to_display(read_path(folder / "Flair_subtrMeanDivStd.nii.gz")[0])
    truth = np.asarray(to_display(read_path(folder / "OTMultiClass.nii.gz")[0]).data)
    regions = labels_to_regions(truth, "brats")
    regionmap = regions_to_labels(regions)
    add_corrected_case(tmp_path, flair, regionmap, stem="corrected", label_names=REGION_LABEL_NAMES)
    ref = open_source(tmp_path).refs[0]
    assert ref.label_convention == "regionmap"
    got = labels_to_regions(ref.load().labels, ref.label_convention)
    for mine, true in zip(got, regions):
        np.testing.assert_array_equal(mine, true)
