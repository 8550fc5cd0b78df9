"""``tumorseg coco2mask`` / ``tumorseg mask2coco``: outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_tumorseg.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_coco2mask_then_mask2coco_on_a_real_split(shared_data, tmp_path, capsys):
    src = shared_data / "coco_pkdarabi" / "valid"
    assert main(["coco2mask", str(src), "-o", str(tmp_path / "m"), "--per-category"]) == 0
    out = capsys.readouterr().out
    assert "429 images" in out and "wrote 429 masks" in out
    masks = sorted((tmp_path / "m").glob("*.tif"))
    assert len(masks) == 429
    values = set()
    for m in masks:
        values |= set(np.unique(tifffile.imread(m)).tolist())
    assert values <= {0, 1, 2} and len(values) == 3

    # Second run keeps what is there; --overwrite replaces it.
    assert main(["coco2mask", str(src), "-o", str(tmp_path / "m")]) == 0
    assert "kept 429 existing" in capsys.readouterr().out
    assert main(["coco2mask", str(src), "-o", str(tmp_path / "m"), "--overwrite"]) == 0
    assert tifffile.imread(masks[0]).max() in (0, 255)

    code = main([
        "mask2coco", str(tmp_path / "m"), "-o", str(tmp_path / "v.json"), "--images", str(src),
        "--category", "1=tumour",
    ])
    assert code == 0
    assert "429 images" in capsys.readouterr().out
    coco = json.loads((tmp_path / "v.json").read_text())
    assert {im["file_name"] for im in coco["images"]} == {p.name for p in src.glob("*.jpg")}
    assert coco["categories"][0]["name"] == "tumour"


def test_splits_are_mirrored(shared_data, tmp_path, capsys):
    assert main(["coco2mask", str(shared_data / "coco_ravirawal"), "-o", str(tmp_path), "--workers", "2"]) == 0
    assert "(train, valid)" in capsys.readouterr().out
    assert len(list((tmp_path / "train").glob("*.tif"))) == 500
    assert len(list((tmp_path / "valid").glob("*.tif"))) == 201


def _one_line_error(capsys, argv: list[str], expect: str) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expect in err, err
    assert "Traceback" not in err


def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, capsys):
    not_coco = tmp_path / "labels.json"
    not_coco.write_text(json.dumps({"shapes": [1, 2, 3]}))
    _one_line_error(capsys, ["coco2mask", str(not_coco), "-o", str(tmp_path / "o")], "not a COCO file")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    _one_line_error(capsys, ["coco2mask", str(broken), "-o", str(tmp_path / "o")], "not valid JSON")
    _one_line_error(capsys, ["coco2mask", str(tmp_path / "missing"), "-o", str(tmp_path / "o")], "does not exist")
    _one_line_error(capsys, ["mask2coco", str(tmp_path / "missing"), "-o", str(tmp_path / "x.json")], "not a folder")
    (tmp_path / "m").mkdir()
    tifffile.imwrite(tmp_path / "m" / "a.tif", np.zeros((4, 4), np.uint8))
    _one_line_error(capsys, ["mask2coco", str(tmp_path / "m"), "-o", str(not_coco)], "exists")
    _one_line_error(
        capsys, ["mask2coco", str(tmp_path / "m"), "-o", str(tmp_path / "y.json"), "--category", "one"], "VALUE=NAME"
    )


def test_console_exit_code_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    proc = subprocess.run(
        [sys.executable, "-m", "napari_tumorseg.cli", "coco2mask", str(bad), "-o", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not a COCO file" in proc.stderr
