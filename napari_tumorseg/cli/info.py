"""``tumorseg info PATH [--json]``: the volumes the readers see in a file or folder."""

from __future__ import annotations

import argparse
import json

from napari_tumorseg.io.readers import describe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="list the volumes in a DICOM folder, NIfTI, NRRD, MetaImage, TIFF/JPG/PNG or folder")
    p.add_argument("path", help="file or folder to inspect")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per volume")
    p.set_defaults(func=run)


def _table(rows: list[dict]) -> str:
    header = ["#", "name", "kind", "shape (z,y,x)", "spacing mm (z,y,x)", "modality", "files", "source"]
    body = [
        [
            str(i),
            r["name"],
            r["kind"],
            "x".join(str(s) for s in r["shape"])
            + (f" x {r['channels']} channels" if r.get("channels", 1) > 1 else ""),
            " x ".join(f"{s:.4g}" for s in r["spacing"]),
            r["modality"] or "-",
            str(r["n_files"]),
            r["source"],
        ]
        for i, r in enumerate(rows)
    ]
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args) -> int:
    rows = describe(args.path)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows))
    return 0
