"""COCO annotations -> one TIFF mask per image, rasterised with pycocotools.

Masks are binary 0/255 uint8 (as in seed 000) or, with ``per_category``, the category
id in the narrowest type that holds every id of the file: uint8, uint16 above 255, uint32
above 65535 (an id of 70000 is stored, never wrapped); an id above 2**32 - 1 cannot be
stored and its annotation is an invalid record. Rasterisation is pycocotools' own
(``frPyObjects`` + ``merge`` + ``decode``), so a mask is pixel-identical to the union of
``COCO.annToMask`` over the image's annotations; polygons reaching outside the image
are clipped by it. Per category, annotations are painted in file order and a later one
wins where two overlap (``masks_to_coco`` emits outer objects first for that reason).

Image sizes come from the image file's header (no JPEG is decoded): when the JSON's
``width``/``height`` disagree, the image wins, the mask is written on its grid and the
report notes it (a note, not an invalid record).

**Invalid records: all or nothing.** An annotation that cannot be rasterised or stored, a
malformed image record, an annotation of an image the file does not list, an image file
that is missing or unreadable, two images that would write one mask: by default any of
these writes NOTHING (the masks are staged and thrown away) and :class:`InvalidRecords`
names them; the CLI exits 1, the COCO dock shows the first. With ``skip_invalid`` the
valid images get their masks and every image touched by an invalid record gets none (a
mask missing one of its annotations would teach a model a wrong outline), each skipped
record reported. Work runs as a generator yielding :class:`Progress` after every image,
so a GUI can show progress and stop early.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pycocotools.mask as mask_utils
import tifffile

from napari_tumorseg.coco.dataset import CocoSet, find_coco_splits, load_coco
from napari_tumorseg.errors import ReadError, TumorSegError, WriteError, first_line
from napari_tumorseg.fileio import atomic_path, commit_stage, make_stage


class InvalidAnnotation(ValueError):
    """An annotation that cannot be rasterised; the converter reports it."""


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
    # Masks written, but worth a look (the JSON's size disagreed with the image's).
    notes: list[str] = field(default_factory=list)
    # "split/file name" of each missing image, for the messages (no folders above the export).
    missing_labels: list[str] = field(default_factory=list, repr=False)

    @property
    def problems(self) -> list[str]:
        """One line per invalid record (what makes the default conversion write nothing)."""
        named = self.missing_labels if len(self.missing_labels) == len(self.missing_files) else [
            p.name for p in self.missing_files]
        out = [f"{name}: image file missing" for name in named]
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
        problems = self.problems + [f"note: {n}" for n in self.notes]
        lines = [head] + [f"  {p}" for p in problems[:max_lines]]
        if len(problems) > max_lines:
            lines.append(f"  ... and {len(problems) - max_lines} more")
        return "\n".join(lines)


class InvalidRecords(TumorSegError):
    """The COCO input holds invalid records and nothing was written (all or nothing).

    ``report`` is the full report (``report.problems``: one line per record); the message
    is one line naming the first.
    """

    def __init__(self, report: Report):
        self.report = report
        problems = report.problems
        n = len(problems)
        first = problems[0] if problems else "?"
        if first.startswith("invalid: "):
            first = first[len("invalid: "):]
        super().__init__(f"nothing written: {n} invalid record{'s' if n != 1 else ''}"
                         f"{': ' if n == 1 else '; first: '}{first}")


@dataclass
class Progress:
    done: int
    total: int
    current: str
    report: Report


def mask_dtype(max_value: int) -> np.dtype:
    if max_value <= 255:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16 if max_value <= 65535 else np.uint32)


def annotation_rle(ann: dict, height: int, width: int) -> dict:
    """One compressed RLE for an annotation: polygons, RLE (iscrowd) or, lacking both, bbox."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        size = [int(s) for s in seg.get("size", [])]
        if size != [height, width]:
            raise InvalidAnnotation(f"RLE size {size} differs from the image's {[height, width]}")
        counts = seg["counts"]
        if isinstance(counts, list):
            # pycocotools casts to uint32 and raises OverflowError on a negative count.
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise InvalidAnnotation("RLE 'counts' holds a negative or non-integer run")
            if sum(counts) != height * width:
                raise InvalidAnnotation(f"RLE counts do not add up to its {width}x{height} size")
            return mask_utils.frPyObjects(seg, height, width)
        if isinstance(counts, (str, bytes)):
            rle = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
            # pycocotools' C decoder trusts the string; a corrupt one must stop here.
            c = rle_counts(rle)
            if c.size and ((c < 0).any() or int(c.sum()) != height * width):
                raise InvalidAnnotation(f"RLE counts do not add up to its {width}x{height} size")
            return rle
        raise InvalidAnnotation("RLE 'counts' is neither a list nor a string")
    if seg:
        polys = []
        for poly in seg:
            # pycocotools reads a first polygon of 4 numbers as a bbox and crashes on
            # fewer than 3 points, so only proper polygons reach it.
            try:
                arr = np.asarray(poly, dtype=np.float64)
            except (TypeError, ValueError):
                continue
            if arr.ndim == 1 and arr.size >= 6 and arr.size % 2 == 0 and np.isfinite(arr).all():
                _check_reach(arr, height, width)
                polys.append(arr)
        if not polys:
            raise InvalidAnnotation("no polygon with 3 or more points")
        rles = mask_utils.frPyObjects(polys, height, width)
        return rles[0] if len(rles) == 1 else mask_utils.merge(rles)
    try:
        bbox = np.asarray([ann["bbox"]], dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidAnnotation("'bbox' is not four numbers") from None
    if bbox.shape != (1, 4) or not np.isfinite(bbox).all() or (bbox[0, 2:] <= 0).any():
        raise InvalidAnnotation(f"degenerate bbox {ann['bbox']}")
    _check_reach(np.concatenate([bbox[0, :2], bbox[0, :2] + bbox[0, 2:]]), height, width)
    return mask_utils.frPyObjects(bbox, height, width)[0]


def _check_reach(coords: np.ndarray, height: int, width: int) -> None:
    """Refuse coordinates far outside the image before pycocotools sees them.

    Its polygon rasteriser scales by 5 into a C int and walks every edge pixel by pixel:
    a vertex at 3e9 overflows and segfaults the process (napari with unsaved edits), one
    at 1e7 allocates gigabytes. Vertices a little outside the image are legal (clipped).
    """
    reach = 2 * max(height, width) + 16
    if np.abs(coords).max(initial=0) > reach:
        worst = float(np.abs(coords).max())
        raise InvalidAnnotation(
            f"coordinate {worst:.6g} lies far outside the {width}x{height} image"
        )


def rle_counts(rle: dict) -> np.ndarray:
    """Run lengths (background first, column-major) of a compressed COCO RLE.

    A vectorised reading of pycocotools' string format (``rleFrString``): 5 bits per
    character, 0x20 continues a number, 0x10 in its last character is the sign, and
    every count after the third is stored as a difference to the one two places back.
    """
    counts = rle["counts"]
    a = np.frombuffer(counts.encode() if isinstance(counts, str) else counts, np.uint8)
    a = a.astype(np.int64) - 48
    if a.size == 0:
        return np.zeros(0, np.int64)
    if (a < 0).any() or (a > 63).any() or a[-1] & 0x20:
        raise InvalidAnnotation("RLE 'counts' string is corrupt")
    ends = np.flatnonzero((a & 0x20) == 0)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    nchar = ends - starts + 1
    if nchar.max() > 12:
        raise InvalidAnnotation("RLE 'counts' string is corrupt")
    shift = 5 * (np.arange(a.size) - np.repeat(starts, nchar))
    x = np.add.reduceat((a & 0x1F) << shift, starts)
    negative = (a[ends] & 0x10) != 0
    x[negative] |= np.left_shift(-1, 5 * nchar[negative])
    c = x.copy()
    c[1::2] = np.cumsum(x[1::2])
    c[2::2] = np.cumsum(x[2::2])
    return c


def paint_rle(out: np.ndarray, rle: dict, value: int) -> None:
    """Set the pixels of a compressed RLE to ``value`` in the C-order ``out`` in place.

    Only the columns the RLE touches are expanded, so a small tumour on a large image
    costs little; pixel-identical to ``pycocotools.mask.decode`` (tested).
    """
    h, w = out.shape
    c = rle_counts(rle)
    if c.size and ((c < 0).any() or int(c.sum()) != h * w):
        raise InvalidAnnotation(f"RLE counts do not add up to its {w}x{h} size")
    n = c.size
    if n < 2:
        return  # all background
    last = n - 1 if n % 2 == 0 else n - 2  # index of the last foreground run
    fg_start = int(c[0])
    fg_end = int(c[: last + 1].sum())
    x0, x1 = fg_start // h, (fg_end - 1) // h + 1
    runs = np.empty(last + 2, np.int64)
    runs[: last + 1] = c[: last + 1]
    runs[0] = fg_start - x0 * h
    runs[-1] = x1 * h - fg_end
    on = np.zeros(last + 2, bool)
    on[1::2] = True
    cols = np.repeat(on, runs).reshape(x1 - x0, h).T
    np.copyto(out[:, x0:x1], value, where=cols)


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
            rle = annotation_rle(ann, height, width)
            if per_category:
                rle_counts(rle)  # a corrupt user RLE must fail here, not mid-painting
            rles.append((rle, int(ann.get("category_id", 1))))
        except InvalidAnnotation as err:
            if invalid is not None:
                invalid.append(f"annotation {ann.get('id', '?')}: {err}")
    if per_category:
        out = np.zeros((height, width), dtype=dtype or mask_dtype(max((c for _, c in rles), default=1)))
        for rle, cat in rles:
            paint_rle(out, rle, cat)
        return out
    out = np.zeros((height, width), dtype=np.uint8)
    if rles:
        merged = rles[0][0] if len(rles) == 1 else mask_utils.merge([r for r, _ in rles])
        try:
            paint_rle(out, merged, 255)
        except InvalidAnnotation as err:
            if invalid is not None:
                invalid.append(f"image annotations: {err}")
    return out


def mask_name(file_name: str) -> str:
    """Relative mask path for an image: same folders and stem, ``.tif``."""
    if "/" not in file_name and "\\" not in file_name:  # the usual case, without pathlib
        stem, ext = os.path.splitext(file_name)
        return (stem if ext else file_name) + ".tif"
    p = PurePosixPath(file_name.replace("\\", "/"))
    return str(p.with_name(p.stem + ".tif"))


COMPRESSIONS = ("none", "packbits", "deflate")
# tifffile's names for them; Deflate level 1: masks are runs, a higher level gains nothing.
_TIFF_COMPRESSION = {"none": {}, "packbits": {"compression": "packbits"},
                     "deflate": {"compression": "zlib", "compressionargs": {"level": 1}}}


def write_mask(
    path: Path, mask: np.ndarray, overwrite: bool = False, compression: str = "none",
    atomic: bool = True,
) -> None:
    """TIFF write (tifffile's format), uncompressed (default), ``"packbits"`` or ``"deflate"``.

    Uncompressed is the default because it is what every reader takes fastest; with
    imagecodecs installed PackBits reads back as fast and saves ~98% disk (measured in
    benchmarks/RESULTS_coco.md). ``atomic`` False is for a file inside a staging folder that
    is committed as a whole (:func:`coco_to_masks`): it is written in place, without a
    temporary file and rename of its own, and removed if the write fails, so the folder
    only ever holds complete masks.
    """
    if compression not in COMPRESSIONS:
        raise TumorSegError(f"compression must be one of {', '.join(COMPRESSIONS)}")
    if atomic:
        with atomic_path(path, overwrite=overwrite) as tmp:
            _write_tiff(tmp, mask, compression)
        return
    try:
        _write_tiff(path, mask, compression)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)  # a mask in a sub-folder of its split
        _write_tiff(path, mask, compression)


def _write_tiff(path, mask: np.ndarray, compression: str) -> None:
    frame = _tiff_frame(mask.shape, mask.dtype.str) if compression == "none" and mask.ndim == 2 else None
    try:
        if frame is None:
            # One strip, no metadata page: the plain baseline TIFF every reader opens.
            tifffile.imwrite(path, mask, photometric="minisblack", metadata=None,
                             rowsperstrip=mask.shape[0], **_TIFF_COMPRESSION[compression])
            return
        head, tail = frame
        with open(path, "wb") as fh:
            fh.write(head)
            fh.write(np.ascontiguousarray(mask).data)
            fh.write(tail)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


@functools.lru_cache(maxsize=16)
def _tiff_frame(shape: tuple[int, ...], dtype: str) -> tuple[bytes, bytes] | None:
    """The bytes tifffile writes before and after the pixels of an uncompressed one-strip mask
    of this shape and dtype (its header, tags and their values), or None when its layout is not
    one contiguous strip.

    An uncompressed mask's file differs from another of the same shape and type only in its
    pixel bytes, so tifffile writes one such file per shape and every mask reuses its framing:
    the files are byte for byte what ``tifffile.imwrite`` writes for each (tested), without its
    per-file tag building (~0.3 ms a mask, more than rasterising one).
    """
    probe = np.zeros(shape, np.dtype(dtype))
    if probe.dtype.byteorder not in "=|" or probe.size == 0:
        return None
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, probe, photometric="minisblack", metadata=None, rowsperstrip=shape[0])
    data = buffer.getvalue()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        if len(tif.pages) != 1 or len(page.dataoffsets) != 1 or page.databytecounts[0] != probe.nbytes:
            return None
        start = int(page.dataoffsets[0])
    end = start + probe.nbytes
    if data[start:end] != probe.tobytes():
        return None
    return data[:start], data[end:]


def _true_size(path: str, height: int, width: int) -> tuple[int, int] | None:
    """(height, width) from the image file's header, or None when it cannot be read."""
    from napari_tumorseg.coco.from_masks import image_size

    try:
        return image_size(Path(path))
    except ReadError:
        return None


def _exists(path: str, listings: dict[str, set[str]]) -> bool:
    """Existence from one listing per folder: on slow file systems a stat per image
    costs more than rasterising it. A file appearing later is still never clobbered:
    :func:`atomic_path` checks again before its rename."""
    folder, name = os.path.split(path)
    if folder not in listings:
        try:
            listings[folder] = {e.name for e in os.scandir(folder or ".") if not e.is_dir()}
        except OSError:
            listings[folder] = set()
    return name in listings[folder]


def _convert_one(
    anns: list[dict], image_path: str, height: int, width: int, dest: str, per_category: bool,
    dtype: np.dtype | None, overwrite: bool, compression: str, write: bool = True,
) -> tuple[list[str], list[str], bool, bool]:
    """(notes about the image, its invalid records, written?, all zero?) for one image's mask.

    The size comes from the image file's header (in the worker threads, where the reads
    overlap): when the JSON disagrees the pixels win, since a mask must fit its image. An
    image with an invalid annotation gets no mask; ``write`` False only checks (the run
    already writes nothing).
    """
    size = _true_size(image_path, height, width)
    if size is None:
        return [], ["unreadable image file"], False, False
    notes = []
    if size != (height, width):
        notes.append(f"the JSON says {width}x{height}, the image is {size[1]}x{size[0]}; "
                     "the image's size was used")
        height, width = size
    invalid: list[str] = []
    mask = rasterize(anns, height, width, per_category, dtype, invalid)
    if invalid or not write:
        return notes, invalid, False, False
    # ``dest`` is in the run's staging folder, which is committed whole (or dropped).
    write_mask(dest, mask, overwrite=overwrite, compression=compression, atomic=False)
    return notes, invalid, True, not mask.any()


def coco_to_masks(
    coco_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    per_category: bool = False,
    overwrite: bool = False,
    image_dir: str | os.PathLike | None = None,
    compression: str = "none",
    workers: int = 1,
    skip_invalid: bool = False,
) -> Iterator[Progress]:
    """Write one mask per image of a COCO file or Roboflow export; yield after each image.

    Splits found in sub-folders are mirrored under ``out_dir``. Invalid records (see the
    module docstring) are collected in the :class:`Report` (``Progress.report``); once every
    image has been looked at, any of them makes the run write nothing and raise
    :class:`InvalidRecords`, unless ``skip_invalid``: then the valid images' masks are
    written and the images the invalid records touch get none. Existing masks are kept
    unless ``overwrite``. ``image_dir`` replaces the JSON's folder as the image location (per
    split: ``image_dir/<split>``). ``workers`` > 1 rasterises and writes in that many
    threads (file writes release the GIL); closing the generator stops after the masks in
    flight and keeps those finished (unless an invalid record was met without
    ``skip_invalid``).
    """
    if compression not in COMPRESSIONS:
        raise TumorSegError(f"compression must be one of {', '.join(COMPRESSIONS)}")
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
    if total == 0:
        bad = [f"{cs.path.name}: {line}" for _, cs in sets for line in cs.invalid if line.startswith("image")]
        if bad:
            raise ReadError(f"no usable image record: {bad[0]}")
    report.n_images = total
    dtype = mask_dtype(max(cs.max_category_id for _, cs in sets)) if per_category else None
    options = (per_category, dtype, overwrite, compression)

    def writing() -> bool:  # an all-or-nothing run that already failed only checks the rest
        return skip_invalid or not report.problems
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    pending: deque = deque()
    done = 0

    def finish(job) -> Progress:
        nonlocal done
        result, dest, n_anns, prefix, label = job
        notes, invalid, written, empty = result.result() if isinstance(result, Future) else result
        report.invalid.extend(f"{label}: {line}" for line in invalid)
        report.notes.extend(f"{label}: {line}" for line in notes)
        if written:
            dest = Path(dest)
            report.written.append(dest)
            if empty:
                report.empty.append(dest)
        done += 1
        return Progress(done, total, label, report)

    # Masks are written into a staging folder beside out_dir and moved into place at the
    # end: a full disk or an invalid record leaves no partial set of masks. A cancel (the
    # generator closed) keeps the masks already finished, as complete files, when the run
    # had not already failed.
    stage = make_stage(out_dir)
    stage_root = stage / out_dir.name
    keep = False
    try:
        # Plain strings in this loop: pathlib costs more per image than painting a mask.
        claimed: set[str] = set()
        listings: dict[str, set[str]] = {}
        for split, cs in sets:
            prefix = f"{split}/" if split else ""
            report.invalid += [f"{prefix}{cs.path.name}: {line}" for line in cs.invalid]
            report.orphan_annotations += [
                f"{prefix}annotation {a.get('id', '?')} -> image_id {a['image_id']} (not listed)"
                for a in cs.orphan_annotations
            ]
            split_out = os.fspath(out_dir / split if split else out_dir)
            stage_out = os.fspath(stage_root / split if split else stage_root)
            image_dir_str = os.fspath(cs.image_dir)
            for image_id, image in cs.images.items():
                name = image["file_name"]
                label = f"{prefix}{name}"
                dest = os.path.join(split_out, mask_name(name))
                skipped = True
                if dest in claimed:
                    report.duplicates.append(f"{label} -> {os.path.basename(dest)}")
                elif image_id in cs.invalid_image_ids:
                    pass  # an annotation of it is invalid (reported with the file's records)
                elif not _exists(os.path.join(image_dir_str, name), listings):
                    report.missing_files.append(cs.image_path(image))
                    report.missing_labels.append(label)
                elif not overwrite and _exists(dest, listings):
                    report.skipped_existing.append(Path(dest))
                else:
                    skipped = False
                claimed.add(dest)
                if skipped:
                    done += 1
                    yield Progress(done, total, label, report)
                    continue
                anns = cs.anns_by_image[image_id]
                args = (anns, os.path.join(image_dir_str, name), image["height"], image["width"],
                        os.path.join(stage_out, mask_name(name)), *options, writing())
                if pool is None:
                    yield finish((_convert_one(*args), dest, len(anns), prefix, label))
                    continue
                pending.append((pool.submit(_convert_one, *args), dest, len(anns), prefix, label))
                if len(pending) >= 2 * workers:
                    yield finish(pending.popleft())
        while pending:
            yield finish(pending.popleft())
        if report.problems and not skip_invalid:
            raise InvalidRecords(report)
        keep = True
    except GeneratorExit:
        keep = writing()
        raise
    except OSError as err:
        raise WriteError(f"cannot write masks to {out_dir}: {err.strerror or err}; nothing was written") from None
    finally:
        try:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            if keep:
                commit_stage(stage, out_dir.parent, overwrite)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def convert_coco_to_masks(coco_path: str | os.PathLike, out_dir: str | os.PathLike, **options) -> Report:
    """Run :func:`coco_to_masks` (same ``options``) to the end and return its report."""
    report = Report(out_dir=Path(out_dir))
    for progress in coco_to_masks(coco_path, out_dir, **options):
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
    # The pixels win over the JSON's width/height, as in coco_to_masks.
    h, w = pixels.shape[:2]
    anns = cs.anns_by_image[record["id"]]
    dtype = mask_dtype(cs.max_category_id) if per_category else None
    mask = rasterize(anns, h, w, per_category, dtype)
    polygons: list[np.ndarray] = []
    for ann in anns:
        seg = ann.get("segmentation")
        if isinstance(seg, list) and seg:
            for poly in seg:
                if isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0:
                    try:
                        arr = np.asarray(poly, dtype=float)
                        if not np.isfinite(arr).all():
                            continue
                        _check_reach(arr, h, w)  # a vertex at 3e9 would hang the Shapes layer
                    except (TypeError, ValueError, InvalidAnnotation):
                        continue
                    polygons.append(arr.reshape(-1, 2)[:, ::-1])
        elif isinstance(seg, dict):
            try:
                m = mask_utils.decode(annotation_rle(ann, h, w))
            except InvalidAnnotation:
                continue
            polygons += mask_polygons(m.astype(bool))
        elif ann.get("bbox"):
            try:
                x, y, bw, bh = (float(v) for v in ann["bbox"])
                _check_reach(np.array([x, y, x + bw, y + bh]), h, w)
            except (TypeError, ValueError, InvalidAnnotation):
                continue
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
        raise ReadError(f"cannot read image {path.name}: {first_line(err)}") from err
