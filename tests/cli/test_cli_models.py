"""``tumorseg models``: the registry on the command line."""

from __future__ import annotations

import json

from napari_tumorseg.cli import main

SEVEN = {"unet", "lintunet", "hybrid_unet", "segformer", "convnextv2", "setr", "glims"}


def test_models_json_lists_the_seven(capsys):
    assert main(["models", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert {i["name"] for i in infos} == SEVEN
    for info in infos:
        assert info["paper"] and info["preset"]["loss"] and info["preset"]["lr"] > 0


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["model", "dims", "output"]
    rows = {line.split()[0]: line for line in out[1:] if line.strip()}
    assert "unet" in rows and "bce/adam lr 0.001" in rows["unet"]


def test_models_single_name_json(capsys):
    assert main(["models", "setr", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == ["setr"]
    assert infos[0]["preset"]["loss"] == "dice"


def test_unknown_name_is_a_one_line_error(capsys):
    assert main(["models", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tumorseg models: error: unknown model 'nope'")
    assert "\n" not in err
