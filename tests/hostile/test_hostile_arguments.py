"""Out-of-range numbers on the command line and in training configs: one line, exit 2.

``--val-fraction 1.5``, ``--threads 0`` and ``--num-workers -1`` used to pass silently.
"""

from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import assert_one_line_error

TRAIN = ["train", "--model", "unet", "--data", "nowhere", "--out", "out"]
BAD_TRAIN_FLAGS = [
    ("--val-fraction", "1.5"), ("--val-fraction", "1"), ("--val-fraction", "-0.1"), ("--val-fraction", "nan"),
    ("--threads", "0"), ("--threads", "-3"), ("--threads", "two"),
    ("--num-workers", "-1"), ("--num-workers", "1.5"),
    ("--epochs", "0"), ("--batch-size", "0"), ("--batch-size", "-8"),
    ("--lr", "0"), ("--lr", "-0.001"), ("--lr", "inf"), ("--size", "0"),
]


@pytest.mark.parametrize("flag, value", BAD_TRAIN_FLAGS)
def test_bad_train_numbers_fail_at_parse_time(tmp_path, cli, flag, value):
    code, out, err = cli(*TRAIN, f"{flag}={value}")
    assert code == 2
    assert_one_line_error(code, err, flag, value if value not in ("nan", "inf") else "finite")
    assert out == ""


BAD_PREDICT_FLAGS = [
    ("--threshold", "1.5"), ("--threshold", "-0.1"), ("--threshold", "nan"),
    ("--batch-size", "0"), ("--threads", "0"),
]


@pytest.mark.parametrize("flag, value", BAD_PREDICT_FLAGS)
def test_bad_predict_numbers_fail_at_parse_time(tmp_path, cli, flag, value):
    code, _, err = cli("predict", "ck.pt", "in.nii.gz", "-o", tmp_path / "o.nii.gz", flag, value)
    assert_one_line_error(code, err, flag)


@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_coco_workers(tmp_path, cli, value):
    code, _, err = cli("coco2mask", tmp_path, "-o", tmp_path / "m", "--workers", value)
    assert_one_line_error(code, err, "--workers")


@pytest.mark.parametrize("key, value", [
    ("val_fraction", 1.5), ("threads", 0), ("num_workers", -1), ("epochs", 0), ("lr", 0),
    ("batch_size", "8"), ("fg_prob", 2), ("empty_slice_fraction", -0.5), ("val_fraction", True),
])
def test_bad_numbers_in_a_config_file(tmp_path, cli, key, value):
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"model": "unet", "data": str(tmp_path), "out_dir": str(tmp_path / "o"),
                                  key: value}))
    code, _, err = cli("train", "--config", config)
    assert_one_line_error(code, err, key)
    assert not (tmp_path / "o").exists()


def test_unknown_subcommand_and_missing_argument_are_one_line(cli):
    for argv in (["fly"], ["predict"], ["coco2mask", "x"], []):
        code, _, err = cli(*argv)
        assert_one_line_error(code, err, "error")
