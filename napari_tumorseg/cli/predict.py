"""``tumorseg predict CKPT INPUT -o OUT``: segment (or classify) any volume the readers open.

Labels go to OUT in ``--format`` (default: from OUT's name: .nii.gz/.nii -> nifti, .nrrd /
.seg.nrrd -> nrrd (3D Slicer's segment names from the model's label names), .mha/.mhd -> mha,
.tif -> tiff, .dcm -> dicom-seg, .json -> coco, a folder -> tiff-slices). ``--probabilities``
also writes the float probability map beside OUT (``<stem>_prob.nii.gz``, or ``.tif`` /
``.nrrd`` / ``.mha`` for TIFF / NRRD / MetaImage exports). Every output is checked before the
model runs, so a refused overwrite, a wrong file name or a DICOM-SEG for a non-DICOM input
costs nothing.

A classifier checkpoint (convnextv2) writes OUT as JSON: per-slice class probabilities and
the case-level tumour type (see inference.predict.aggregate_case).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_tumorseg.cli._args import add_precision, positive_int, probability
from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.progress import progress_text


def register(sub: argparse._SubParsersAction) -> None:
    from napari_tumorseg.export import FORMATS

    p = sub.add_parser("predict", help="segment a volume with a checkpoint and export the labels")
    p.add_argument("checkpoint", metavar="CKPT",
                   help="napari-tumorseg checkpoint (.pt), weights with --model, or 'starter' (the shipped "
                        "automatic BraTS model: whole tumour, core, enhancing)")
    p.add_argument("input", metavar="INPUT", help="DICOM file/folder, NIfTI, NRRD, MetaImage, TIFF/JPG/PNG or a folder of them")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (or folder for tiff-slices)")
    p.add_argument("--format", choices=FORMATS, default=None, help="export format (default: from OUT's name)")
    p.add_argument("--threshold", type=probability, default=0.5, metavar="T", help="probability threshold (default 0.5)")
    p.add_argument("--probabilities", action="store_true", help="also write the probability map beside OUT")
    p.add_argument("--series", type=int, default=None, metavar="N",
                   help="which volume of INPUT to segment (0-based, as `tumorseg info` lists them)")
    p.add_argument("--model", default=None, metavar="NAME", help="registry model of a bare weights file CKPT")
    p.add_argument("--device", default="auto", metavar="D", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-size", type=positive_int, default=8, dest="batch_size", metavar="B",
                   help="slices per forward for 2D models (default 8)")
    p.add_argument("--overlap", type=float, default=0.8, metavar="O",
                   help="sliding-window overlap for 3D models (default 0.8, as in GLIMS)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="T",
                   help="CPU threads for torch (default: torch's, i.e. all cores)")
    add_precision(p)
    p.add_argument("--keep-all-components", action="store_true", dest="keep_all",
                   help="keep what the model's cleanup drops: region models (the starter) drop "
                        "oedema that holds no core; a model whose validation cases chose it keeps "
                        "only its largest component")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _pick_volume(path: str, series: int | None, prep: dict):
    """The image to predict on: the chosen series, the only image, or the case's scans as channels.

    Channel assembly is the core's (napari_tumorseg.channels), the same rule the docks use.
    """
    from napari_tumorseg.channels import ChannelPlan, assemble_input
    from napari_tumorseg.io.readers import describe, read_path

    plan = ChannelPlan.from_preprocessing(prep)
    if series is not None:
        vol = read_path(path, series=series)[0]
        if vol.kind != "image":
            raise TumorSegError(f"series {series} of {Path(path).name} is a label map, not an image")
        return vol
    found = describe(path)
    images = [i for i, d in enumerate(found) if d["kind"] == "image"]
    if not images:
        raise TumorSegError(f"{Path(path).name} holds no image to segment (only label maps)")
    if len(images) == 1:
        return read_path(path, series=images[0])[0]
    if plan.channels > 1 or plan.names:
        # A model that names its channels (one FLAIR included) takes them from a case folder
        # by sequence, as the docks do.
        vols = [read_path(path, series=i)[0] for i in images]
        if plan.names:
            from napari_tumorseg.channels import order_by_names

            try:
                vols = order_by_names(vols, list(plan.names))
            except TumorSegError:
                if plan.channels > 1:
                    raise
                vols = []  # one channel no scan's sequence matches: the user picks the series
        elif len(vols) != plan.channels:
            vols = []
        if vols:
            return assemble_input(vols[0], vols[1:], plan)
    names = ", ".join(f"{i}: {found[i]['name']}" for i in images[:6])
    more = ", ..." if len(images) > 6 else ""
    raise TumorSegError(
        f"{Path(path).name} holds {len(images)} images ({names}{more}); choose one with --series N"
    )


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, ev) -> None:
        if self.quiet or ev.kind != "progress" or not ev.total:
            return
        pct = int(100 * ev.done / ev.total)
        line = progress_text("predicting", ev.done, ev.total, ev.unit)
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif pct // 25 > self.last // 25 or ev.done == ev.total:
            print(line, file=sys.stderr)
        self.last = pct

    def end(self) -> None:
        if not self.quiet and self.tty:
            print(file=sys.stderr)


def _classify(args, predictor, volume, out: Path) -> int:
    import torch

    from napari_tumorseg.fileio import atomic_path
    from napari_tumorseg.inference.predict import aggregate_case

    from napari_tumorseg.inference.predict import iter_classify_slices

    last = None
    for last in iter_classify_slices(predictor, volume, None, args.batch_size,
                                     threads=args.threads or torch.get_num_threads()):
        pass
    probs = last.probabilities[last.slices]
    case = aggregate_case(probs, predictor.class_names)
    doc = {
        "input": str(args.input), "checkpoint": str(args.checkpoint), "model": predictor.model_name,
        "class_names": predictor.class_names,
        "case": {"label": case.label, "probability": case.probability,
                 "probabilities": dict(zip(case.class_names, map(float, case.probabilities))),
                 "slices_used": case.slices_used, "policy": case.policy},
        "slices": [{"z": z, **dict(zip(predictor.class_names, map(float, p)))} for z, p in enumerate(probs)],
    }
    with atomic_path(out, overwrite=args.overwrite) as tmp:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(f"{volume.name}: {case.text()}; wrote {out}")
    return 0


def run(args) -> int:
    import torch

    from napari_tumorseg.export import (
        export_labels,
        export_probabilities,
        format_from_path,
        is_dicom_source,
        probability_path,
    )
    from napari_tumorseg.fileio import check_writable, staged_outputs
    from napari_tumorseg.inference.predict import (
        load_predictor,
        predict_volume,
        probabilities_to_labels,
    )

    out = Path(args.output)
    if not 0.0 <= args.threshold <= 1.0:
        raise TumorSegError(f"threshold must be within 0-1, got {args.threshold}")
    if args.threads is not None and args.threads < 1:
        raise TumorSegError(f"threads must be at least 1, got {args.threads}")
    if args.batch_size < 1:
        raise TumorSegError(f"batch size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.overlap < 1.0:
        raise TumorSegError(f"overlap must be in [0, 1), got {args.overlap}")
    if not Path(args.input).exists():
        raise TumorSegError(f"{args.input}: no such file or folder")

    from napari_tumorseg.inference.starter import checkpoint_argument

    predictor = load_predictor(checkpoint_argument(args.checkpoint), device=args.device, model=args.model,
                               precision=args.precision)
    if predictor.is_classifier:
        if out.suffix.lower() != ".json":
            raise TumorSegError(f"{predictor.model_name} is a classifier: OUT must be a .json file")
        check_writable(out, args.overwrite)
        volume = _pick_volume(args.input, args.series, predictor.prep)
        return _classify(args, predictor, volume, out)

    fmt = args.format or format_from_path(out)
    if fmt is None:
        raise TumorSegError(f"{out.name}: cannot tell the format from the name; pass --format")
    if fmt in ("nrrd", "mha") and not out.name.lower().endswith((".nrrd",) if fmt == "nrrd" else (".mha", ".mhd")):
        ends = ".nrrd or .seg.nrrd" if fmt == "nrrd" else ".mha or .mhd"
        raise TumorSegError(f"{out.name}: --format {fmt} writes a file whose name ends in {ends}")
    prob_out = probability_path(out, fmt) if args.probabilities else None
    # Refuse before reading and predicting (tiff-slices checks its files when it writes).
    if fmt != "tiff-slices":
        check_writable(out, args.overwrite)
    if prob_out is not None:
        check_writable(prob_out, args.overwrite)

    volume = _pick_volume(args.input, args.series, predictor.prep)
    if fmt == "dicom-seg" and not is_dicom_source(volume):
        raise TumorSegError(
            f"DICOM-SEG needs a DICOM input; {Path(args.input).name} is not DICOM (use --format nifti, tiff or coco)"
        )

    progress = _Progress(args.quiet)
    final = None
    try:
        # No GUI thread to leave a core for: every core predicts (predict_volume's default keeps one free).
        threads = args.threads or torch.get_num_threads()
        for ev in predict_volume(predictor, volume, batch_size=args.batch_size, overlap=args.overlap,
                                 threads=threads):
            progress(ev)
            final = ev
    finally:
        progress.end()
    prob = final.probabilities
    labels = probabilities_to_labels(prob, args.threshold, predictor.output_kind)
    dropped = 0
    if not args.keep_all:
        labels, dropped = predictor.clean(labels)
    image = volume.data if fmt == "coco" else None
    # Labels and probabilities land together or not at all (a full disk between the two
    # must not leave a labels file whose probability map is missing).
    with staged_outputs(out, args.overwrite) as stage:
        staged = export_labels(labels, fmt, stage / out.name, volume, overwrite=args.overwrite,
                               names=predictor.label_names(), colors=predictor.label_colors(),
                               algorithm=predictor.model_name, image=image)
        if prob_out is not None:
            staged.append(export_probabilities(prob, stage / prob_out.name, volume, overwrite=args.overwrite))
    written = [out.parent / Path(p).relative_to(stage) for p in staged]
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    n_fg = int(np.count_nonzero(labels))
    shape = "x".join(str(s) for s in volume.spatial_shape)
    print(f"{volume.name} ({shape}): {n_fg} labelled voxels = {n_fg * voxel_ml:.2f} mL "
          f"at threshold {args.threshold:g}; wrote {written[0]}"
          + (f" and {len(written) - 1} more file(s)" if len(written) > 1 else ""))
    if dropped:
        print(f"dropped {dropped} component(s): {predictor.cleanup} "
              "(--keep-all-components keeps them)")
    # The dock's rule, on the same numbers: an empty or whole-volume result is written, and said.
    from napari_tumorseg.user_edits import result_problem

    problem = result_problem(n_fg, int(np.prod(volume.spatial_shape)), float(np.max(prob)) if prob.size else 0.0,
                             args.threshold)
    if problem:
        print(f"tumorseg predict: warning: {problem}", file=sys.stderr)
    return 0
