"""``tumorseg models [NAME] [--json]``: the model registry, with each paper's training preset."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the segmentation/classification models and their paper presets",
        description="List every registered model: paper, dims, output, input size, "
        "channels and the paper's training preset.",
    )
    p.add_argument("name", nargs="?", help="show only this model")
    p.add_argument("--json", action="store_true", help="print JSON (a list of model_info dicts)")
    p.set_defaults(func=run)


def _row(info: dict) -> list[str]:
    pre = info["preset"]
    size = "x".join(str(s) for s in info["input_size"])
    return [
        info["name"],
        f"{info['dims']}D",
        info["output"],
        f"{info['in_channels']}->{info['out_channels']}",
        size,
        str(info["input_multiple"]),
        f"{pre['loss']}/{pre['optimizer']} lr {pre['lr']:g}",
        f"{pre['batch_size']}x{pre['epochs']}",
        info["paper"].split("_")[0],
    ]


def run(args: argparse.Namespace) -> int:
    from napari_tumorseg.models import list_models, model_info

    names = [args.name] if args.name else list_models()
    infos = [model_info(n) for n in names]  # unknown name -> TumorSegError
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    header = ["model", "dims", "output", "channels", "input", "multiple", "preset",
              "batch x epochs", "seed"]
    rows = [header] + [_row(i) for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    if args.name:
        print(f"\n{infos[0]['description']}")
        if infos[0].get("cpu_recipe"):
            print(f"CPU recipe (the default without CUDA; --recipe paper for the above): "
                  f"{infos[0]['cpu_recipe']['note']}")
    return 0
