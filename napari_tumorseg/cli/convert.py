"""``tumorseg convert INPUT -o OUTPUT [--series N] [--overwrite]``: one volume to NIfTI, NRRD,
MetaImage or TIFF.

NIfTI, NRRD (``.nrrd``, 3D Slicer's ``.seg.nrrd``) and MetaImage (``.mha``, ``.mhd``) output
keep the true world geometry (DICOM's LPS positions are already in
RAS+ inside a Volume) and the source's own voxel order: a NIfTI input comes out as the same
array with the same affine (the readers' radiological display order is for the screen only,
as for the exports), a DICOM series in its slice order with the affine that puts each voxel
where the series had it. A label map written as NRRD carries its label names as 3D Slicer's
segment names (a ``.seg.nrrd`` read here keeps its own). TIFF output keeps the voxel size only (TIFF has no notion of position
or orientation), in the display order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_tumorseg.errors import TumorSegError
from napari_tumorseg.export.nifti import write_nifti
from napari_tumorseg.export.tiff import TIFF_SUFFIXES, write_tiff_stack
from napari_tumorseg.fileio import check_writable
from napari_tumorseg.io.nifti import is_nifti_path
from napari_tumorseg.io.nrrd_mha import itk_suffix
from napari_tumorseg.io.orientation import to_source_order
from napari_tumorseg.io.readers import describe, read_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert one volume (DICOM series, NIfTI, NRRD, MetaImage, TIFF, ...) "
                                       "to .nii.gz/.nii, .nrrd/.seg.nrrd, .mha/.mhd or .tif")
    p.add_argument("input", help="file or folder to read")
    p.add_argument("-o", "--output", required=True, help="output file: .nii.gz, .nii, .nrrd, .seg.nrrd, .mha, .mhd, .tif or .tiff")
    p.add_argument("--series", type=int, default=None, metavar="N",
                   help="which volume to convert when INPUT holds several (0-based, as listed by `tumorseg info`)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    out = Path(args.output)
    to_nifti = is_nifti_path(out)
    to_itk = itk_suffix(out) not in (None, ".nhdr")
    if not to_nifti and not to_itk and out.suffix.lower() not in TIFF_SUFFIXES:
        raise TumorSegError(f"{out.name}: output must end in .nii.gz, .nii, .nrrd, .seg.nrrd, .mha, .mhd, .tif or .tiff")
    # Refuse before reading: a large DICOM study should not load only to be turned away.
    check_writable(out, args.overwrite)
    series = args.series
    if series is None:
        found = describe(args.input)
        if len(found) > 1:
            names = ", ".join(f"{i}: {d['name']}" for i, d in enumerate(found[:6]))
            more = ", ..." if len(found) > 6 else ""
            raise TumorSegError(
                f"{Path(args.input).name} holds {len(found)} volumes ({names}{more}); choose one with --series N"
            )
    volume = read_path(args.input, series=series)[0]
    if itk_suffix(out) == ".seg.nrrd" and volume.kind != "labels":
        raise TumorSegError(f"{out.name}: a .seg.nrrd holds a label map; {volume.name} is an image (use .nrrd)")
    if to_itk:
        from napari_tumorseg.export.nrrd_mha import write_itk

        data, source_affine = to_source_order(volume.data, volume)
        write_itk(data, out, affine=source_affine if source_affine is not None else volume.affine,
                  overwrite=args.overwrite, labels=volume.kind == "labels",
                  label_names=volume.metadata.get("label_names"), label_colors=volume.metadata.get("label_colors"))
    elif to_nifti:
        data, source_affine = to_source_order(volume.data, volume)
        labels = volume.kind == "labels"  # a 3D Slicer segmentation keeps its segment names
        write_nifti(data, out, affine=source_affine if source_affine is not None else volume.affine,
                    overwrite=args.overwrite, intent="label" if labels else None,
                    label_names=volume.metadata.get("label_names") if labels else None,
                    label_colors=volume.metadata.get("label_colors") if labels else None)
    else:
        write_tiff_stack(volume.data, out, spacing=volume.spacing, overwrite=args.overwrite)
    shape = "x".join(str(s) for s in volume.data.shape)
    spacing = " x ".join(f"{s:.4g}" for s in volume.spacing)
    print(f"wrote {out} ({volume.name}, {volume.kind}, {shape} at {spacing} mm)")
    return 0
