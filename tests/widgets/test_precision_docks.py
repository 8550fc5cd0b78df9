"""The Train and Predict docks show the precision a run will use (issue 15)."""

from __future__ import annotations

import pytest

from napari_tumorseg.precision import cpu_description
from tests.widgets.conftest import add_dock

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("flag, auto", [("0", "fp32"), ("1", "bf16")])
def test_train_dock_says_what_auto_means(make_napari_viewer, monkeypatch, tmp_path, flag, auto):
    monkeypatch.setenv("TUMORSEG_CPU_BF16", flag)
    viewer = make_napari_viewer()
    dock = add_dock(viewer, "Train")
    dock.device.setCurrentText("cpu")
    assert dock.precision.currentText() == f"auto ({auto})"
    tip = dock.precision.toolTip()
    assert f"{auto} (" in tip and cpu_description() in tip
    dock.out_picker.set_path(str(tmp_path / "out"))
    dock.data_picker.set_path(str(tmp_path))
    assert dock.build_config().precision == "auto"
    dock.precision.setCurrentIndex(dock.precision.findData("bf16"))
    assert dock.build_config().precision == "bf16"
    assert "bf16 (asked for" in dock.precision.toolTip()


def test_predict_dock_shows_and_switches_the_precision(make_napari_viewer, monkeypatch, tmp_path):
    import torch

    from napari_tumorseg.models import create_model
    from napari_tumorseg.models.checkpoint import save_checkpoint
    from napari_tumorseg.training.preprocessing import default_preprocessing

    monkeypatch.setenv("TUMORSEG_CPU_BF16", "1")
    path = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(path, create_model("unet", in_channels=1, out_channels=1, width=4), model_name="unet",
                    config={"width": 4}, in_channels=1, out_channels=1,
                    preprocessing=default_preprocessing(2, [64, 64], 1, "binary"),
                    class_names=["background", "tumour"], history=[])
    viewer = make_napari_viewer()
    dock = add_dock(viewer, "Predict")
    dock.device.setCurrentText("cpu")
    assert dock.precision.currentText() == "auto (bf16)"
    dock.ckpt_picker.set_path(str(path))
    predictor = dock.load_model()
    assert predictor.precision.name == "bf16"
    assert dock.model_label.text().endswith("on cpu, bf16")
    dock.precision.setCurrentIndex(dock.precision.findData("fp32"))
    assert predictor.precision.name == "fp32" and dock.model_label.text().endswith("on cpu, fp32")
