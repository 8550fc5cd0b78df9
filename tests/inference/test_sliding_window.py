"""Sliding-window inference on real BraTS data with a tiny GLIMS."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.inference.sliding_window import count_windows, sliding_window_predict
from napari_tumorseg.models.glims import build_glims

CASE = "brats2013_deepmedic/validation/brats_2013_pat0003_1"



def _tiny(in_channels: int = 2):
    torch.manual_seed(0)
    return build_glims(in_channels, 3, width=4, img_size=32, num_heads=[2, 4, 8])


@pytest.fixture(scope="module")
def tumour_crop(shared_data) -> np.ndarray:
    """(2, 31, 37, 32) FLAIR + T1c crop around the tumour, (z, y, x) order."""
    case = shared_data / CASE
    chans = [
        np.asarray(nib.load(case / f"{m}_subtrMeanDivStd.nii.gz").dataobj, dtype=np.float32).transpose(2, 1, 0)
        for m in ("Flair", "T1c")
    ]
    labels = np.asarray(nib.load(case / "OTMultiClass.nii.gz").dataobj).transpose(2, 1, 0)
    z, y, x = np.argwhere(labels > 0).mean(0).astype(int)
    crop = np.stack(chans)[:, z - 15 : z + 16, y - 18 : y + 19, x - 16 : x + 16]
    assert crop.shape == (2, 31, 37, 32) and crop.std() > 0
    return crop


def test_real_crop_gives_probabilities_of_the_input_shape(tumour_crop):
    model = _tiny().train()
    calls: list[tuple[int, int]] = []
    probs = sliding_window_predict(
        model, tumour_crop, roi_size=32, overlap=0.5, progress=lambda d, t: calls.append((d, t))
    )
    assert probs.shape == (3, 31, 37, 32)
    assert probs.dtype == torch.float32 and probs.device.type == "cpu"
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    assert float(probs.std()) > 0  # not a constant map
    total = count_windows(tumour_crop.shape[1:], 32, 0.5)
    assert total == 2  # z and x fit one (padded) window, y needs two
    assert calls == [(1, total), (2, total)]
    assert model.training  # mode restored


def test_single_window_equals_the_plain_forward(tumour_crop):
    model = _tiny().eval()
    x = torch.from_numpy(np.ascontiguousarray(tumour_crop[:, :, :32, :]))
    x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 1))  # (2, 32, 32, 32): exactly one window
    batch = torch.stack([x, x.flip(-1)])
    probs = sliding_window_predict(model, batch, roi_size=(32, 32, 32), overlap=0.8, sw_batch_size=2)
    with torch.no_grad():
        direct = torch.sigmoid(model(batch))
    assert probs.shape == (2, 3, 32, 32, 32)
    torch.testing.assert_close(probs, direct, atol=1e-5, rtol=1e-4)


def test_window_count_for_a_brats_volume():
    # 240 x 240 x 155 with 96^3 windows: stride 19 at overlap 0.8 -> 9 x 9 x 5, stride 48 at 0.5 -> 4 x 4 x 3
    assert count_windows((155, 240, 240), 96, 0.8) == 405
    assert count_windows((155, 240, 240), 96, 0.5) == 48


@pytest.mark.parametrize(
    "kwargs",
    [
        {"volume": np.zeros((31, 37, 32), np.float32)},
        {"overlap": 1.0},
        {"roi_size": (32, 32)},
        {"mode": "median"},
        {"activation": "relu"},
        {"volume": np.zeros((3, 32, 32, 32), np.float32)},  # model expects 2 channels
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs):
    args = {"volume": np.zeros((2, 32, 32, 32), np.float32), "roi_size": 32, "overlap": 0.25, **kwargs}
    with pytest.raises(TumorSegError) as err:
        sliding_window_predict(_tiny(), **args)
    assert "\n" not in str(err.value)
