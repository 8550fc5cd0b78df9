"""A multi-channel case names each layer once: "<case> FLAIR", never "AX AX FLAIR" (issue 9.4)."""

import numpy as np

from napari_tumorseg.io.readers import combine_channels, layer_data
from napari_tumorseg.io.volume import Volume


def _vol(name: str) -> Volume:
    return Volume(np.zeros((2, 4, 4), np.int16), spacing=(5.0, 1.0, 1.0), name=name)


def test_dicom_series_names_share_their_first_word():
    case = combine_channels([_vol("AX FLAIR"), _vol("AX T2")])
    assert case.name == "AX" and case.channel_names == ["FLAIR", "T2"]
    (_, kwargs, kind), = layer_data([case])
    assert kind == "image" and kwargs["name"] == ["AX FLAIR", "AX T2"]
    assert kwargs["visible"] == [True, False]  # one channel on screen, the other listed


def test_prefix_stops_at_a_whole_word():
    case = combine_channels([_vol("BRATS_HG0015_T1"), _vol("BRATS_HG0015_T1C")])
    assert case.name == "BRATS_HG0015"  # not "BRATS_HG0015_T1"
    assert case.channel_names == ["T1", "T1c"]


def test_no_common_prefix_keeps_each_series_name():
    case = combine_channels([_vol("sT2/TSE/T"), _vol("sT2W/FLAIR")])
    (_, kwargs, _), = layer_data([case])
    names = kwargs["name"]
    assert len(set(names)) == 2 and all(len(n.split()) == len(set(n.split())) for n in names)


def test_several_series_one_visible_labels_always():
    vols = [_vol("FLAIR"), _vol("T2"), Volume(np.ones((2, 4, 4), np.uint8), name="ROI", kind="labels")]
    shown = [kw.get("visible", True) for _, kw, _ in layer_data(vols)]
    assert shown == [True, False, True]


def test_a_case_folder_shows_its_flair_whatever_the_file_order(shared_data):
    """BraTS 2023 names its files t1c, t1n, t2f, t2w: the first file is the T1c, but the
    scan shown is the FLAIR (t2f), as for a 2021 case whose flair file sorts first."""
    from napari_tumorseg.io.readers import read_path

    vols = read_path(shared_data / "brats2023_gli_00001")
    assert [v.name.rsplit("-", 1)[1] for v in vols] == ["t1c", "t1n", "t2f", "t2w"]
    shown = [kw.get("visible", True) for _, kw, _ in layer_data(vols)]
    assert shown == [False, False, True, False]


def test_without_a_flair_the_first_scan_shows():
    vols = [_vol("T1"), _vol("T2"), Volume(np.ones((2, 4, 4), np.uint8), name="ROI", kind="labels")]
    shown = [kw.get("visible", True) for _, kw, _ in layer_data(vols)]
    assert shown == [True, False, True]
