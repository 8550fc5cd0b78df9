"""Make a shippable copy of a checkpoint: fp16 weights, no optimiser / RNG / resume state.

    python scripts/shrink_checkpoint.py RUN/best.pt napari_tumorseg/resources/starter_click_unet.pt [slice]

The copy loads like any checkpoint (``load_checkpoint`` casts the weights back to the
model's fp32 parameters) but cannot be resumed. It keeps the config (click encoding
included), preprocessing, class names, history, and the training options and split.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from napari_tumorseg.fileio import atomic_path

KEEP_EXTRA = ("train_config", "resolved", "split")


def shrink(src: Path, dst: Path, scope: str | None = None) -> None:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    if scope:
        # How the training images were normalised: "slice" when every training item was a
        # single 2D image (see interactive.learned), so volumes are normalised slice by slice.
        ckpt["preprocessing"]["normalize_scope"] = scope
    ckpt["state_dict"] = {k: v.half() if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    ckpt["extra"] = {k: v for k, v in ckpt.get("extra", {}).items() if k in KEEP_EXTRA}
    ckpt["extra"]["weights_dtype"] = "float16"
    with atomic_path(dst, overwrite=True) as tmp:
        torch.save(ckpt, tmp)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python scripts/shrink_checkpoint.py SRC.pt DST.pt [slice]")
    shrink(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None)
