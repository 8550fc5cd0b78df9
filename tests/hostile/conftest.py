"""Helpers for the hostile-input corpus: every bad input is one line on stderr, no traceback.

The corpus is generated in tmp_path by each test (small files), so it needs no data set.
"""

from __future__ import annotations

import pytest


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``tumorseg ARGV`` in-process: (exit code, stdout, stderr). argparse exits count."""
    from napari_tumorseg.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> str:
    """Non-zero exit, exactly one non-empty stderr line holding every word, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, f"exit 0 for bad input; stderr: {err!r}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder) -> dict:
    """{relative path: bytes} of every file under ``folder`` (to prove nothing changed)."""
    from pathlib import Path

    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def cli(capsys):
    return lambda *argv: run_cli(list(argv), capsys)


@pytest.fixture(scope="session")
def unet_checkpoint(tmp_path_factory):
    """An untrained width-4 U-Net checkpoint: enough to reach the prediction path."""
    import torch

    from napari_tumorseg.models import create_model
    from napari_tumorseg.models.checkpoint import save_checkpoint
    from napari_tumorseg.training.preprocessing import default_preprocessing

    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, out_channels=1, width=4).eval()
    prep = default_preprocessing(2, [16, 16], 1, "binary")
    prep.update(normalize="zscore", class_names=["background", "tumour"])
    path = tmp_path_factory.mktemp("ckpt") / "unet.pt"
    save_checkpoint(path, model, model_name="unet", config={"width": 4}, in_channels=1, out_channels=1,
                    preprocessing=prep, class_names=["background", "tumour"], history=[])
    return path
