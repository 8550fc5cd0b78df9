"""``tumorseg train`` end to end on real data (tiny U-Net, CPU)."""

from __future__ import annotations

import csv

from napari_tumorseg.cli import main


def test_cli_trains_one_epoch_and_writes_three_files(shared_data, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model_config: {width: 4}\nmax_train_items: 4\nmax_val_items: 2\naugmentation: false\n")
    out = tmp_path / "out"
    code = main(["train", "--model", "unet", "--data", str(shared_data / "coco_ravirawal"), "--out", str(out),
                 "--epochs", "1", "--batch-size", "2", "--size", "32", "--lr", "0.002",
                 "--device", "cpu", "--config", str(cfg), "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.csv", "last.pt"]
    epoch_lines = [l for l in captured.out.splitlines() if l.startswith("epoch ")]
    assert len(epoch_lines) == 1 and "train_loss" in epoch_lines[0] and "val_dice" in epoch_lines[0]
    rows = list(csv.DictReader(open(out / "history.csv", newline="")))
    assert len(rows) == 1 and float(rows[0]["lr"]) == 0.002
    # Running again into the same folder is refused in one line; --resume continues.
    code = main(["train", "--model", "unet", "--data", str(shared_data / "coco_ravirawal"), "--out", str(out),
                 "--epochs", "1", "--size", "32", "--config", str(cfg)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "already holds" in err and len(err.splitlines()) == 1
    code = main(["train", "--model", "unet", "--data", str(shared_data / "coco_ravirawal"), "--out", str(out),
                 "--epochs", "2", "--batch-size", "2", "--size", "32", "--config", str(cfg),
                 "--resume", str(out / "last.pt"), "--threads", "1"])
    assert code == 0
    assert len(list(csv.DictReader(open(out / "history.csv", newline="")))) == 2


def test_cli_bad_data_is_a_one_line_error(tmp_path, capsys):
    code = main(["train", "--model", "unet", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [f"tumorseg train: error: data path {tmp_path / 'missing'} does not exist"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("nothing to train on")
    code = main(["train", "--model", "unet", "--data", str(tmp_path / "junk"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no training data" in err
    assert not (tmp_path / "o" / "last.pt").exists()
