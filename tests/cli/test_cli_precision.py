"""``--precision auto|fp32|bf16`` on train, predict and evaluate-clicks (issue 15)."""

from __future__ import annotations

import pytest

from napari_tumorseg.cli import main
from napari_tumorseg.models.checkpoint import load_checkpoint


@pytest.mark.parametrize("command", [
    ["train", "--model", "unet", "--data", "x", "--out", "y"],
    ["predict", "ckpt.pt", "in.nii.gz", "-o", "out.nii.gz"],
    ["evaluate-clicks", "image.nii.gz", "gt.nii.gz"],
])
def test_a_bad_precision_is_a_one_line_argparse_error(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--precision", "fp8"])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--precision" in err and "fp8" in err


def test_train_then_predict_in_bf16(shared_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model_config: {width: 4}\nmax_train_items: 4\nmax_val_items: 2\naugmentation: false\n")
    code = main(["train", "--model", "unet", "--data", str(shared_data / "coco_ravirawal"), "--out", str(out),
                 "--epochs", "1", "--batch-size", "2", "--size", "32", "--device", "cpu",
                 "--config", str(cfg), "--threads", "1", "--precision", "bf16"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert " in bf16 " in captured.out
    _, ck = load_checkpoint(out / "last.pt", build=False)
    assert ck["extra"]["resolved"]["precision"] == "bf16"

    from napari_tumorseg.inference import predict as predict_mod

    used = []
    real = predict_mod.predict_volume

    def spy(predictor, *args, **kwargs):
        used.append(predictor.precision.name)
        return real(predictor, *args, **kwargs)

    monkeypatch.setattr(predict_mod, "predict_volume", spy)
    jpg = min((shared_data / "coco_ravirawal" / "valid").glob("*.jpg"))
    for choice in ("bf16", "fp32", "auto"):
        target = tmp_path / f"pred_{choice}.tif"
        assert main(["predict", str(out / "last.pt"), str(jpg), "-o", str(target), "--quiet",
                     "--precision", choice]) == 0
        assert target.exists()
    assert used == ["bf16", "fp32", "fp32"]  # auto: fp32 on the tests' "CPU" (tests/conftest.py)
