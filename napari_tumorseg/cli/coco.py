"""``tumorseg coco2mask`` and ``tumorseg mask2coco``: COCO polygons <-> TIFF masks."""

from __future__ import annotations

import argparse
import sys

from napari_tumorseg.cli._args import positive_int
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.progress import progress_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "coco2mask",
        help="write one TIFF mask per image of a COCO JSON or Roboflow export folder",
        description="Rasterise COCO polygons/RLE (pycocotools) into one .tif mask per image, "
        "same file stem; split sub-folders (train/valid/test) are mirrored under OUTDIR. "
        "All or nothing: an invalid record (an annotation that cannot be drawn or stored, a "
        "malformed image record, an annotation of an unlisted image, a missing or unreadable "
        "image file, two images with one mask name) writes no mask at all and exits 1, naming "
        "the records (the first 10, one a line); --skip-invalid writes the valid images' masks "
        "instead and exits 0, one warning line per skipped record. A JSON width/height that "
        "disagrees with the image is a warning: the image's size is used.",
    )
    p.add_argument("coco", help="COCO JSON file, or a folder with _annotations.coco.json (or splits)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the masks")
    p.add_argument(
        "--per-category", action="store_true",
        help="write the category id as the label value instead of binary 0/255 (uint8, uint16 "
        "above 255, uint32 above 65535; an id above 4294967295 is an invalid record)",
    )
    p.add_argument(
        "--skip-invalid", action="store_true",
        help="write the masks of the valid images when some records are invalid; an image an "
        "invalid record touches gets no mask (default: write nothing and exit 1)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace masks that already exist")
    p.add_argument("--images", metavar="DIR", help="image folder, if not beside the JSON")
    p.add_argument(
        "--compression", choices=("none", "packbits", "deflate"), default="none",
        help="TIFF compression (default none: fastest to read back; packbits: ~50x smaller)",
    )
    p.add_argument("--workers", type=positive_int, default=1, help="threads rasterising and writing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_coco2mask)

    p = sub.add_parser(
        "mask2coco",
        help="COCO JSON with polygons from a folder of label masks",
        description="One annotation per connected component of each label value; category = "
        "label value (0/255 masks give category 1). Polygons trace the exact pixel boundary.",
    )
    p.add_argument("masks", help="folder of .tif/.tiff/.png masks")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json", help="COCO JSON to write")
    p.add_argument("--images", metavar="DIR", help="take file names and sizes from these images")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.json if it exists")
    p.add_argument(
        "--category", action="append", default=[], metavar="VALUE=NAME",
        help="name of a label value's category, e.g. --category 1=tumor (repeatable)",
    )
    p.add_argument(
        "--holes", choices=("fill", "rle"), default="fill",
        help="objects with holes: fill them (polygons only) or store them as RLE (exact)",
    )
    p.set_defaults(func=run_mask2coco)


#: Invalid records named one per line when nothing was written.
MAX_LISTED = 10


def run_coco2mask(args) -> int:
    from napari_tumorseg.coco.to_masks import InvalidRecords, coco_to_masks

    if args.workers < 1:
        raise TumorSegError("--workers must be at least 1")
    report = None
    show = not args.quiet and sys.stderr.isatty()
    try:
        for progress in coco_to_masks(
            args.coco, args.output, per_category=args.per_category, overwrite=args.overwrite,
            image_dir=args.images, compression=args.compression, workers=args.workers,
            skip_invalid=args.skip_invalid,
        ):
            report = progress.report
            if show and (progress.done % 50 == 0 or progress.done == progress.total):
                print("\r" + progress_text("masks", progress.done, progress.total, "images"), end="",
                      file=sys.stderr, flush=True)
    except InvalidRecords as err:
        if show:
            print(file=sys.stderr)
        _print_refusal(err.report.problems)
        return 1
    if show and report is not None:
        print(file=sys.stderr)
    if report is None:
        print(f"no images listed in {args.coco}; nothing written")
        return 0
    print(report.summary())
    for problem in report.problems:  # only with --skip-invalid: the run failed otherwise
        print(f"tumorseg coco2mask: warning: skipped {_record(problem)}", file=sys.stderr)
    for note in report.notes:
        print(f"tumorseg coco2mask: warning: {note}", file=sys.stderr)
    return 0


def _record(problem: str) -> str:
    return problem[len("invalid: "):] if problem.startswith("invalid: ") else problem


def _print_refusal(problems: list[str]) -> None:
    """Nothing written: one line for one invalid record, else a header and one line each."""
    hint = "(--skip-invalid writes the valid images' masks)"
    if len(problems) == 1:
        print(f"tumorseg coco2mask: error: nothing written: 1 invalid record: {_record(problems[0])} {hint}",
              file=sys.stderr)
        return
    print(f"tumorseg coco2mask: error: nothing written: {len(problems)} invalid records {hint}:", file=sys.stderr)
    for problem in problems[:MAX_LISTED]:
        print(f"  {_record(problem)}", file=sys.stderr)
    if len(problems) > MAX_LISTED:
        print(f"  ... and {len(problems) - MAX_LISTED} more", file=sys.stderr)


def _category_names(specs: list[str]) -> dict[int, str] | None:
    names = {}
    for spec in specs:
        value, sep, name = spec.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise TumorSegError(f"--category {spec!r}: expected VALUE=NAME, e.g. 1=tumor")
        if int(value) == 0:
            raise TumorSegError(f"--category {spec!r}: 0 is the background, not a category")
        names[int(value)] = name.strip()
    return names or None


def run_mask2coco(args) -> int:
    from napari_tumorseg.coco.from_masks import mask_folder_to_coco

    coco = mask_folder_to_coco(
        args.masks, args.output, images_dir=args.images, overwrite=args.overwrite,
        category_names=_category_names(args.category), holes=args.holes,
    )
    n_empty = len(coco["images"]) - len({a["image_id"] for a in coco["annotations"]})
    cats = ", ".join(f"{c['id']}={c['name']}" for c in coco["categories"])
    print(
        f"wrote {args.output}: {len(coco['images'])} images ({n_empty} without objects), "
        f"{len(coco['annotations'])} annotations, categories {cats or '-'}"
    )
    return 0
