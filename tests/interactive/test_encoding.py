"""Click encoding: disks / Gaussians sized in mm on anisotropic grids, and the
click-guided wrapper every registry segmenter gets."""

import numpy as np
import pytest
import torch

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.interactive.encoding import ClickEncoding, ClickGuided, encoding_of
from napari_tumorseg.models import create_model, get_info


def test_disk_radius_in_mm_honours_anisotropic_spacing():
    enc = ClickEncoding(kind="disk", radius_mm=3.0, min_radius_px=0.0)
    # 0.5 mm rows, 2 mm columns, 4 mm slices: 3 mm is 6 rows, 1.5 columns, 0.75 slices.
    m = enc.click_map((9, 41, 41), (4.0, 0.5, 2.0), [[4, 20, 20]])
    assert m[4, 20, 20] == 1
    ys = np.flatnonzero(m[4, :, 20])
    xs = np.flatnonzero(m[4, 20, :])
    zs = np.flatnonzero(m[:, 20, 20])
    assert (ys.min(), ys.max()) == (14, 26)  # +-6 rows
    assert (xs.min(), xs.max()) == (19, 21)  # +-1 column (1.5 rounds down inside the disk)
    assert zs.tolist() == [4]  # the next slice is 4 mm away: outside a 3 mm disk
    # Every voxel inside is within 3 mm, every one outside is farther.
    zz, yy, xx = np.indices(m.shape)
    d = np.sqrt(((zz - 4) * 4.0) ** 2 + ((yy - 20) * 0.5) ** 2 + ((xx - 20) * 2.0) ** 2)
    assert np.array_equal(m > 0, d <= 3.0)


def test_min_radius_keeps_a_click_visible_on_a_coarse_grid():
    enc = ClickEncoding(radius_mm=1.0, min_radius_px=2.0)
    m = enc.click_map((20, 20), (4.0, 4.0), [[10, 10]])  # 1 mm < one 4 mm pixel
    assert m[10, 8] == 1 and m[10, 12] == 1 and m[10, 13] == 0


def test_gaussian_peaks_at_the_click_and_fades():
    enc = ClickEncoding(kind="gaussian", radius_mm=4.0, min_radius_px=0.0)
    m = enc.click_map((32, 32), (1.0, 1.0), [[16, 16], [16, 16.0]])
    assert m[16, 16] == pytest.approx(1.0)
    assert 0 < m[16, 18] < m[16, 17] < 1
    assert m[16, 21] == 0  # beyond the radius


def test_maps_channels_and_off_grid_clicks():
    enc = ClickEncoding(with_prev_mask=True)
    prev = np.zeros((16, 16), bool)
    prev[2:5, 2:5] = True
    maps = enc.maps((16, 16), (1, 1), [[8, 8]], [[100, 100]], prev)
    assert maps.shape == (3, 16, 16)
    assert maps[0].any() and not maps[1].any()  # a click off the grid draws nothing
    assert np.array_equal(maps[2] > 0, prev)
    assert ClickEncoding(with_prev_mask=False).maps((16, 16), (1, 1), [], []).shape == (2, 16, 16)


def test_config_round_trip_and_bad_values():
    enc = ClickEncoding(kind="gaussian", radius_mm=3.5, with_prev_mask=False)
    cfg = enc.to_config()
    assert cfg["channels"] == 2
    assert ClickEncoding.from_config(cfg) == enc
    assert encoding_of({"interactive": cfg}) == enc
    assert encoding_of({}) is None
    with pytest.raises(TumorSegError, match="unknown click encoding"):
        ClickEncoding(kind="square")
    with pytest.raises(TumorSegError, match="channels"):
        ClickEncoding.from_config({**cfg, "channels": 3})
    with pytest.raises(TumorSegError, match="positive"):
        ClickEncoding(radius_mm=0)


@pytest.mark.parametrize("name", ["unet", "lintunet", "hybrid_unet", "segformer", "setr", "glims"])
def test_every_segmenter_becomes_click_guided(name):
    info = get_info(name)
    model = create_model(name, in_channels=2, interactive=True, **info.tiny_config)
    assert isinstance(model, ClickGuided)
    assert model.image_channels == 2
    size = (1, 2, 32, 32, 32) if info.dims == 3 else (1, 2, 64, 64)
    model.eval()
    with torch.no_grad():
        auto = model(torch.zeros(size))  # image channels alone: prompts are zeros
        full = model(torch.cat([torch.zeros(size), torch.zeros((1, 3, *size[2:]))], 1))
        auto = auto[0] if isinstance(auto, (list, tuple)) else auto
        full = full[0] if isinstance(full, (list, tuple)) else full
    assert torch.equal(auto, full)
    with pytest.raises(TumorSegError, match="prompt channels"):
        model(torch.zeros((1, 4, *size[2:])))


def test_a_classifier_cannot_be_click_guided():
    with pytest.raises(TumorSegError, match="classifier"):
        create_model("convnextv2", interactive=True, **get_info("convnextv2").tiny_config)
