"""The automatic engine choice: the shipped starter click model when it loads, else classic."""

from __future__ import annotations

import pytest

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.interactive import engines
from napari_tumorseg.interactive.classic import ClassicEngine


def test_no_starter_means_classic_and_says_so(tmp_path):
    choice = engines.default_engine(tmp_path)
    assert isinstance(choice.engine, ClassicEngine)
    assert "no starter click model" in choice.reason


def test_an_unusable_starter_falls_back_to_classic_with_the_reason(tmp_path):
    (tmp_path / "starter_click_bad.pt").write_bytes(b"not a checkpoint")
    assert engines.starter_checkpoint(tmp_path).name == "starter_click_bad.pt"
    choice = engines.default_engine(tmp_path)
    assert isinstance(choice.engine, ClassicEngine)
    assert "starter_click_bad.pt unusable" in choice.reason


def test_the_shipped_starter_is_the_default_when_present():
    ckpt = engines.starter_checkpoint()
    if ckpt is None:
        pytest.skip("no starter click model ships in this checkout")
    choice = engines.default_engine()
    assert not isinstance(choice.engine, ClassicEngine)
    assert ckpt.name in choice.reason


def test_engine_from_name():
    assert isinstance(engines.engine_from_name("classic").engine, ClassicEngine)
    with pytest.raises(TumorSegError, match="no checkpoint"):
        engines.engine_from_name("/nonexistent/model.pt")


def test_a_volume_gets_the_classic_engine_when_the_starter_is_2d():
    ckpt = engines.starter_checkpoint()
    if ckpt is None:
        pytest.skip("no starter click model ships in this checkout")
    image = engines.default_engine()
    volume = engines.default_engine(volume=True)
    assert getattr(image.engine, "dims", 2) == 2 and not isinstance(image.engine, ClassicEngine)
    assert isinstance(volume.engine, ClassicEngine) and volume.reason == engines.VOLUME_REASON
