"""COCO annotations -> one TIFF mask per image, rasterised with pycocotools.

Masks are binary 0/255 uint8 (as in seed 000) or, with ``per_category``, the category
id (uint8, or uint16 when an id exceeds 255). Rasterisation is pycocotools' own
(``frPyObjects`` + ``merge`` + ``decode``), so a mask is pixel-identical to the union of
``COCO.annToMask`` over the image's annotations; polygons reaching outside the image
are clipped by it. Per category, annotations are painted in file order and a later one
wins where two overlap (``masks_to_coco`` emits outer objects first for that reason).

Image sizes come from the JSON (``width``/``height``), so no JPEG is decoded; the image
file is only checked for existence, because a mask without its image is useless for
training (the seed's ``compare_folders``). Work runs as a generator yielding
:class:`Progress` after every image, so a GUI can show progress and stop early.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pycocotools.mask as mask_utils
import tifffile

from napari_tumorseg.coco.dataset import CocoSet, find_coco_splits, load_coco
from napari_tumorseg.errors import ReadError
from napari_tumorseg.fileio import atomic_path


class InvalidAnnotation(ValueError):
    """An annotation that cannot be rasterised; the converter reports and skips it."""


@dataclass
class Report:
    """What a conversion did; every list holds paths or one-line descriptions."""

    out_dir: Path | None = None
    splits: list[str] = field(default_factory=list)
    n_images: int = 0
    written: list[Path] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)  # written all-zero: no annotations
    skipped_existing: list[Path] = field(default_factory=list)
    missing_files: list[Path] = field(default_factory=list)
    orphan_annotations: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = [f"image file missing: {p}" for p in self.missing_files]
        out += [f"orphan annotation: {o}" for o in self.orphan_annotations]
        out += [f"invalid: {i}" for i in self.invalid]
        out += [f"duplicate mask name: {d}" for d in self.duplicates]
        return out

    def summary(self, max_lines: int = 10) -> str:
        head = (
            f"{self.n_images} images in {len(self.splits) or 1} split(s)"
            f"{' (' + ', '.join(self.splits) + ')' if any(self.splits) else ''}: "
            f"wrote {len(self.written)} masks ({len(self.empty)} empty) to {self.out_dir}; "
            f"kept {len(self.skipped_existing)} existing; "
            f"{len(self.missing_files)} image files missing; "
            f"{len(self.orphan_annotations)} orphan annotations; "
            f"{len(self.invalid)} invalid records"
        )
        problems = self.problems
        lines = [head] + [f"  {p}" for p in problems[:max_lines]]
        if len(problems) > max_lines:
            lines.append(f"  ... and {len(problems) - max_lines} more")
        return "\n".join(lines)


@dataclass
class Progress:
    done: int
    total: int
    current: str
    report: Report


def mask_dtype(max_value: int) -> np.dtype:
    return np.dtype(np.uint8 if max_value <= 255 else np.uint16)


def annotation_rle(ann: dict, height: int, width: int) -> dict:
    """One compressed RLE for an annotation: polygons, RLE (iscrowd) or, lacking both, bbox."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        size = [int(s) for s in seg.get("size", [])]
        if size != [height, width]:
            raise InvalidAnnotation(f"RLE size {size} differs from the image's {[height, width]}")
        counts = seg["counts"]
        if isinstance(counts, list):
            return mask_utils.frPyObjects(seg, height, width)
        if isinstance(counts, (str, bytes)):
            return {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
        raise InvalidAnnotation("RLE 'counts' is neither a list nor a string")
    if seg:
        polys = []
        for poly in seg:
            # pycocotools reads a first polygon of 4 numbers as a bbox and crashes on
            # fewer than 3 points, so only proper polygons reach it.
            if (
                isinstance(poly, list)
                and len(poly) >= 6
                and len(poly) % 2 == 0
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly)
            ):
                polys.append([float(v) for v in poly])
        if not polys:
            raise InvalidAnnotation("no polygon with 3 or more points")
        rles = mask_utils.frPyObjects(polys, height, width)
        return rles[0] if len(rles) == 1 else mask_utils.merge(rles)
    bbox = np.asarray([ann["bbox"]], dtype=np.float64)
    if not np.isfinite(bbox).all() or (bbox[0, 2:] <= 0).any():
        raise InvalidAnnotation(f"degenerate bbox {ann['bbox']}")
    return mask_utils.frPyObjects(bbox, height, width)[0]


def rasterize(
    annotations: Iterable[dict],
    height: int,
    width: int,
    per_category: bool = False,
    dtype: np.dtype | None = None,
    invalid: list[str] | None = None,
) -> np.ndarray:
    """(height, width) mask of the annotations: 0/255, or category ids if ``per_category``.

    Invalid annotations are skipped; their reasons are appended to ``invalid`` when given.
    """
    rles: list[tuple[dict, int]] = []
    for ann in annotations:
        try:
            rles.append((annotation_rle(ann, height, width), int(ann.get("category_id", 1))))
        except InvalidAnnotation as err:
            if invalid is not None:
                invalid.append(f"annotation {ann.get('id', '?')}: {err}")
    if per_category:
        dtype = dtype or mask_dtype(max((c for _, c in rles), default=1))
        out = np.zeros((height, width), dtype=dtype)
        for rle, cat in rles:
            out[mask_utils.decode(rle).astype(bool)] = cat
        return out
    out = np.zeros((height, width), dtype=np.uint8)
    if rles:
        merged = rles[0][0] if len(rles) == 1 else mask_utils.merge([r for r, _ in rles])
        # decode() is column-major; one multiply writes the C-order 0/255 result.
        np.multiply(mask_utils.decode(merged), 255, out=out, casting="unsafe")
    return out


def mask_name(file_name: str) -> PurePosixPath:
    """Relative mask path for an image: same folders and stem, ``.tif``."""
    p = PurePosixPath(file_name.replace("\\", "/"))
    return p.with_name(p.stem + ".tif")


def write_mask(path: Path, mask: np.ndarray, overwrite: bool = False, compress: bool = False) -> None:
    """Atomic TIFF write; ``compress`` uses Deflate (readable everywhere, ~100x smaller)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        if compress:
            tifffile.imwrite(tmp, mask, compression="zlib", compressionargs={"level": 1})
        else:
            tifffile.imwrite(tmp, mask)


def coco_to_masks(
    coco_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    per_category: bool = False,
    overwrite: bool = False,
    image_dir: str | os.PathLike | None = None,
    compress: bool = False,
) -> Iterator[Progress]:
    """Write one mask per image of a COCO file or Roboflow export; yield after each image.

    Splits found in sub-folders are mirrored under ``out_dir``. Missing image files,
    annotations of unlisted images and malformed records are reported in the
    :class:`Report` (``Progress.report``) and skipped; existing masks are kept unless
    ``overwrite``. ``image_dir`` replaces the JSON's folder as the image location (per
    split: ``image_dir/<split>``).
    """
    out_dir = Path(out_dir)
    splits = find_coco_splits(coco_path)
    sets: list[tuple[str, CocoSet]] = []
    for split, json_path in splits:
        imgs = None
        if image_dir is not None:
            imgs = Path(image_dir) / split if split else Path(image_dir)
        sets.append((split, load_coco(json_path, image_dir=imgs)))
    if out_dir.exists() and not out_dir.is_dir():
        raise ReadError(f"output {out_dir} is a file, not a folder")

    report = Report(out_dir=out_dir, splits=[s for s, _ in sets])
    total = sum(len(cs.images) for _, cs in sets)
    report.n_images = total
    dtype = mask_dtype(max(cs.max_category_id for _, cs in sets)) if per_category else None
    done = 0
    claimed: set[Path] = set()
    for split, cs in sets:
        prefix = f"{split}/" if split else ""
        report.invalid += [f"{prefix}{cs.path.name}: {line}" for line in cs.invalid]
        report.orphan_annotations += [
            f"{prefix}annotation {a.get('id', '?')} -> image_id {a['image_id']} (not listed)"
            for a in cs.orphan_annotations
        ]
        split_out = out_dir / split if split else out_dir
        for image_id, image in cs.images.items():
            done += 1
            name = image["file_name"]
            dest = split_out / mask_name(name)
            if dest in claimed:
                report.duplicates.append(f"{prefix}{name} -> {dest.name}")
            elif not cs.image_path(image).is_file():
                report.missing_files.append(cs.image_path(image))
            elif dest.exists() and not overwrite:
                report.skipped_existing.append(dest)
            else:
                anns = cs.anns_by_image[image_id]
                invalid: list[str] = []
                mask = rasterize(
                    anns, image["height"], image["width"], per_category, dtype, invalid
                )
                report.invalid += [f"{prefix}{line}" for line in invalid]
                write_mask(dest, mask, overwrite=overwrite, compress=compress)
                report.written.append(dest)
                if len(anns) == len(invalid):
                    report.empty.append(dest)
            claimed.add(dest)
            yield Progress(done, total, f"{prefix}{name}", report)


def convert_coco_to_masks(
    coco_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    per_category: bool = False,
    overwrite: bool = False,
    image_dir: str | os.PathLike | None = None,
    compress: bool = False,
) -> Report:
    """Run :func:`coco_to_masks` to the end and return its report."""
    report = Report(out_dir=Path(out_dir))
    for progress in coco_to_masks(coco_path, out_dir, per_category, overwrite, image_dir, compress):
        report = progress.report
    if not report.splits:  # empty COCO: the generator never yielded
        report.splits = [s for s, _ in find_coco_splits(coco_path)]
    return report


def render_coco_image(
    coco: CocoSet | str | os.PathLike,
    image: int | str,
    per_category: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``(image_array, mask, polygons)`` for one image, for a preview before writing.

    ``image`` is an image id, file name or stem. ``mask`` is what :func:`coco_to_masks`
    would write. ``polygons`` are (N, 2) float arrays in (row, col) order, napari Shapes
    order, in napari data coordinates (pixel centres on integers: COCO's pixel-corner
    coordinates minus 0.5), so they sit on the image's pixels; RLE annotations give their
    mask's outlines, bbox-only ones a rectangle.
    """
    from napari_tumorseg.coco.from_masks import mask_polygons

    cs = coco if isinstance(coco, CocoSet) else load_coco(coco)
    record = cs.find_image(image)
    path = cs.image_path(record)
    if not path.is_file():
        raise ReadError(f"image file {path} is missing")
    pixels = _read_image(path)
    h, w = record["height"], record["width"]
    if pixels.shape[:2] != (h, w):
        raise ReadError(f"{path.name} is {pixels.shape[1]}x{pixels.shape[0]}, the JSON says {w}x{h}")
    anns = cs.anns_by_image[record["id"]]
    dtype = mask_dtype(cs.max_category_id) if per_category else None
    mask = rasterize(anns, h, w, per_category, dtype)
    polygons: list[np.ndarray] = []
    for ann in anns:
        seg = ann.get("segmentation")
        if isinstance(seg, list) and seg:
            for poly in seg:
                if isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0:
                    polygons.append(np.asarray(poly, dtype=float).reshape(-1, 2)[:, ::-1])
        elif isinstance(seg, dict):
            try:
                m = mask_utils.decode(annotation_rle(ann, h, w))
            except InvalidAnnotation:
                continue
            polygons += mask_polygons(m.astype(bool))
        elif ann.get("bbox"):
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            polygons.append(np.array([[y, x], [y, x + bw], [y + bh, x + bw], [y + bh, x]]))
    return pixels, mask, [p - 0.5 for p in polygons]


def _read_image(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            return tifffile.imread(path)
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im)
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise ReadError(f"cannot read image {path.name}: {err}") from err
