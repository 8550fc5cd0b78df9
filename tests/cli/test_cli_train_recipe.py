"""``tumorseg train --recipe / --width / --max-minutes`` on real data (tiny runs, CPU)."""

from __future__ import annotations

import csv

import pytest
import torch

from napari_tumorseg.cli import main


@pytest.fixture
def small(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("max_train_items: 2\nmax_val_items: 1\nhd95: false\n")
    return cfg


def _train(shared_data, out, small, *extra):
    return main(["train", "--model", "unet", "--data", str(shared_data / "coco_ravirawal"),
                 "--out", str(out), "--size", "32", "--threads", "1", "--config", str(small), *extra])


def _resolved(out):
    from napari_tumorseg.models.checkpoint import load_checkpoint

    _, ck = load_checkpoint(out / "last.pt", build=False)
    return ck["extra"]["resolved"], ck["config"]


def test_cli_defaults_to_the_cpu_recipe_without_cuda(shared_data, tmp_path, small, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "cpu"
    assert _train(shared_data, out, small, "--epochs", "1", "--width", "4") == 0
    text = capsys.readouterr().out
    # The start line names what the data decided: single JPGs -> instance norm, their window.
    assert "(cpu recipe; instance norm; 8-bit window)" in text and "or 10 min, whichever comes first" in text
    resolved, config = _resolved(out)
    assert resolved["recipe"] == "cpu" and resolved["loss"] == "bce_dice" and resolved["lr"] == 0.001
    assert config["width"] == 4  # --width wins over the recipe's 16
    # The rest of the recipe's model config stays; its norm follows the data (single images).
    assert config["norm"] == "instance"


def test_cli_recipe_paper_switches(shared_data, tmp_path, small, capsys):
    out = tmp_path / "paper"
    assert _train(shared_data, out, small, "--recipe", "paper", "--epochs", "1", "--width", "4",
                  "--batch-size", "2") == 0
    assert "(paper recipe; 8-bit window)" in capsys.readouterr().out
    resolved, config = _resolved(out)
    assert resolved["recipe"] == "paper" and resolved["max_minutes"] is None
    assert (resolved["loss"], resolved["lr"], resolved["scheduler"]) == ("bce", 0.001, "step")


def test_cli_max_minutes_stops_after_the_epoch_that_passes_it(shared_data, tmp_path, small, capsys):
    out = tmp_path / "limited"
    # 6 ms: the first epoch passes it, so the run ends after exactly one of its five epochs.
    assert _train(shared_data, out, small, "--epochs", "5", "--width", "4",
                  "--max-minutes", "0.0001") == 0
    text = capsys.readouterr().out
    assert "time limit reached after epoch 1" in text
    assert len(list(csv.DictReader(open(out / "history.csv", newline="")))) == 1
    assert (out / "best.pt").exists()


@pytest.mark.parametrize("flags, words", [
    (["--width", "0"], "--width must be at least 1"),
    (["--max-minutes", "-1"], "max_minutes must be above 0"),
    (["--recipe", "cpu", "--model", "segformer"], "segformer has no CPU recipe"),
])
def test_cli_bad_recipe_options_are_one_line(shared_data, tmp_path, small, capsys, flags, words):
    code = _train(shared_data, tmp_path / "o", small, "--epochs", "1", *flags)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "o" / "last.pt").exists()


def test_cli_models_shows_the_cpu_recipe(capsys):
    import json

    assert main(["models", "unet"]) == 0
    assert "CPU recipe (the default without CUDA" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    infos = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
    assert infos["unet"]["cpu_recipe"]["model_config"] == {"width": 16, "norm": "auto"}
    assert infos["segformer"]["cpu_recipe"] is None
