"""Volume -> napari layer geometry: a cropped series lands where it is in the scanner."""

import numpy as np

from napari_tumorseg.io.readers import read_path
from napari_tumorseg.io.volume import Volume, volume_from_layer


def _world(vol: Volume, idx) -> np.ndarray:
    return (vol.affine @ np.array([*idx, 1.0]))[:3]


def test_cropped_field_of_view_overlays_its_source(shared_data):
    flair = read_path(shared_data / "brats2012_hg0015" / "BRATS_HG0015_FLAIR.nii.gz")[0]
    off = np.array([10, 20, 30])
    crop_affine = flair.affine.copy()
    crop_affine[:3, 3] = _world(flair, off)
    z, y, x = off
    crop = Volume(flair.data[z:z + 40, y:y + 60, x:x + 50], flair.spacing, crop_affine, name="crop")

    _, kf, _ = flair.layer_data()
    _, kc, _ = crop.layer_data()
    # napari coordinate of a voxel = index * scale + translate; the same anatomy must match.
    idx_crop = np.array([5, 7, 9])
    napari_crop = idx_crop * np.array(kc["scale"]) + np.array(kc["translate"])
    napari_full = (idx_crop + off) * np.array(kf["scale"]) + np.array(kf["translate"])
    np.testing.assert_allclose(napari_crop, napari_full, atol=1e-6)
    assert np.any(np.abs(np.array(kc["translate"]) - np.array(kf["translate"])) > 1.0)


def test_layer_metadata_round_trips_to_a_volume(shared_data):
    roi = read_path(shared_data / "dicom_brainix" / "ROI")[0]
    data, kwargs, kind = roi.layer_data()
    back = volume_from_layer(data, kwargs["metadata"], kwargs["scale"], kwargs["name"], kind)
    np.testing.assert_allclose(back.affine, roi.affine)
    assert back.spacing == roi.spacing and back.source == roi.source
    assert back.metadata["dicom"].series_uid == roi.metadata["dicom"].series_uid
    np.testing.assert_allclose(back.translate(), roi.translate())
