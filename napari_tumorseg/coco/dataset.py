"""Loading and validating COCO annotation files (Roboflow / Kaggle exports included).

A Roboflow export is a folder holding ``_annotations.coco.json`` with its images beside
it, either directly or in split sub-folders (``train/``, ``valid/``, ``test/``).
:func:`find_coco_splits` finds those files; :func:`load_coco` turns one into a
:class:`CocoSet` whose problems (annotations of unknown images, malformed records) are
collected rather than fatal, so a converter can report them and go on. Only a file that
is not COCO at all raises :class:`~napari_tumorseg.errors.TumorSegError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from napari_tumorseg.errors import ReadError

ROBOFLOW_JSON = "_annotations.coco.json"
# Above these an image size in a JSON is a typo or an attack, not an MRI slice: a mask of
# 20000 x 20000 pixels would be 400 MB before anything checks it against the image.
MAX_SIDE = 16384
MAX_PIXELS = 64 * 1024 * 1024
# Label values are written into uint8/uint16/uint32 masks; larger ids cannot be stored.
MAX_CATEGORY_ID = 2**32 - 1


@dataclass
class CocoSet:
    """One COCO file, indexed. ``images`` keeps the file's order."""

    path: Path
    image_dir: Path
    images: dict[int, dict]
    annotations: list[dict]
    categories: dict[int, dict]
    anns_by_image: dict[int, list[dict]] = field(default_factory=dict)
    orphan_annotations: list[dict] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # one line per malformed record
    # Images that a malformed annotation names: their mask would miss it (never written alone).
    invalid_image_ids: set[int] = field(default_factory=set)

    @property
    def max_category_id(self) -> int:
        ids = list(self.categories) + [int(a.get("category_id", 1)) for a in self.annotations]
        return max(ids, default=1)

    def image_path(self, image: dict) -> Path:
        return self.image_dir / image["file_name"]

    def find_image(self, key: int | str) -> dict:
        """An image record by id, by ``file_name`` or by file stem."""
        if isinstance(key, int) and not isinstance(key, bool):
            if key in self.images:
                return self.images[key]
            raise ReadError(f"no image with id {key} in {self.path}")
        name = str(key)
        for image in self.images.values():
            fn = image["file_name"]
            if fn == name or PurePosixPath(fn).name == name or PurePosixPath(fn).stem == name:
                return image
        raise ReadError(f"no image named {name!r} in {self.path}")


def coco_json_in(folder: Path) -> Path | None:
    """The COCO file of a one-split folder: ``_annotations.coco.json``, else its only JSON."""
    direct = folder / ROBOFLOW_JSON
    if direct.is_file():
        return direct
    jsons = sorted(folder.glob("*.json"))
    return jsons[0] if len(jsons) == 1 else None


def find_coco_splits(path: str | os.PathLike) -> list[tuple[str, Path]]:
    """``[(split_name, json_path)]`` for a COCO JSON file or a Roboflow export folder.

    A JSON file or a folder holding ``_annotations.coco.json`` gives one entry with
    split name ``""``; otherwise every direct sub-folder holding one is a split, named
    after the sub-folder. A folder with neither but exactly one ``*.json`` uses that.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{path} does not exist")
    if path.is_file():
        return [("", path)]
    direct = path / ROBOFLOW_JSON
    if direct.is_file():
        return [("", direct)]
    splits = [
        (sub.name, sub / ROBOFLOW_JSON)
        for sub in sorted(p for p in path.iterdir() if p.is_dir())
        if (sub / ROBOFLOW_JSON).is_file()
    ]
    if splits:
        return splits
    only = coco_json_in(path)
    if only is not None:
        return [("", only)]
    raise ReadError(f"no {ROBOFLOW_JSON} in {path} or its sub-folders")


def load_coco(path: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> CocoSet:
    """Read and validate one COCO file (or a folder with exactly one split).

    ``image_dir`` defaults to the JSON file's folder, the Roboflow layout.
    """
    splits = find_coco_splits(path)
    if len(splits) > 1:
        names = ", ".join(s for s, _ in splits)
        raise ReadError(f"{path} holds several splits ({names}); pick one")
    json_path = splits[0][1]
    try:
        with open(json_path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise ReadError(f"{json_path} is not valid JSON (line {err.lineno}: {err.msg})") from err
    except UnicodeDecodeError as err:
        raise ReadError(f"{json_path} is not a text JSON file") from err
    except RecursionError:
        raise ReadError(f"{json_path} is nested too deeply to be a COCO file") from None
    except OSError as err:
        raise ReadError(f"cannot read {json_path}: {err.strerror}") from err
    return coco_from_dict(data, json_path, Path(image_dir) if image_dir else json_path.parent)


def coco_from_dict(data: object, json_path: Path, image_dir: Path) -> CocoSet:
    """Validate an already parsed COCO dict; see :func:`load_coco`."""
    if not isinstance(data, dict):
        raise ReadError(f"{json_path} is not a COCO file (top level is not an object)")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ReadError(f"{json_path} is not a COCO file (no '{key}' list)")
    raw_cats = data.get("categories", [])
    if not isinstance(raw_cats, list):
        raise ReadError(f"{json_path} is not a COCO file ('categories' is not a list)")

    invalid: list[str] = []
    images: dict[int, dict] = {}
    for n, image in enumerate(data["images"]):
        problem = _image_problem(image)
        if problem:
            invalid.append(f"image #{n}: {problem}")
            continue
        if image["id"] in images:
            raise ReadError(f"{json_path}: duplicate image id {image['id']}")
        images[image["id"]] = image

    categories = {
        c["id"]: c for c in raw_cats
        if isinstance(c, dict) and isinstance(c.get("id"), int) and 0 <= c["id"] <= MAX_CATEGORY_ID
    }

    annotations: list[dict] = []
    orphans: list[dict] = []
    invalid_image_ids: set[int] = set()
    by_image: dict[int, list[dict]] = {i: [] for i in images}
    for n, ann in enumerate(data["annotations"]):
        problem = _annotation_problem(ann)
        if problem:
            ident = ann.get("id", f"#{n}") if isinstance(ann, dict) else f"#{n}"
            invalid.append(f"annotation {ident}: {problem}")
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            if isinstance(image_id, int) and image_id in images:
                invalid_image_ids.add(image_id)
            continue
        if ann["image_id"] not in images:
            orphans.append(ann)
            continue
        annotations.append(ann)
        by_image[ann["image_id"]].append(ann)
    return CocoSet(
        path=json_path,
        image_dir=image_dir,
        images=images,
        annotations=annotations,
        categories=categories,
        anns_by_image=by_image,
        orphan_annotations=orphans,
        invalid=invalid,
        invalid_image_ids=invalid_image_ids,
    )


def _image_problem(image: object) -> str:
    if not isinstance(image, dict):
        return "not an object"
    if not isinstance(image.get("id"), int):
        return "no integer 'id'"
    fn = image.get("file_name")
    if not isinstance(fn, str) or not fn:
        return "no 'file_name'"
    p = PurePosixPath(fn.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        return f"file_name {fn!r} leaves the image folder"
    for key in ("width", "height"):
        v = image.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            return f"no positive integer '{key}'"
        if v > MAX_SIDE:
            return f"'{key}' {v} is larger than {MAX_SIDE} pixels"
    if image["width"] * image["height"] > MAX_PIXELS:
        return f"{image['width']}x{image['height']} pixels is larger than this tool accepts"
    return ""


def _annotation_problem(ann: object) -> str:
    if not isinstance(ann, dict):
        return "not an object"
    if not isinstance(ann.get("image_id"), int):
        return "no integer 'image_id'"
    cat = ann.get("category_id", 1)
    if not isinstance(cat, int) or isinstance(cat, bool) or cat < 0:
        return "'category_id' is not a non-negative integer"
    if cat > MAX_CATEGORY_ID:
        return f"'category_id' {cat} does not fit a 32-bit mask"
    seg = ann.get("segmentation")
    bbox = ann.get("bbox")
    has_seg = bool(seg)
    if has_seg and not isinstance(seg, (list, dict)):
        return "'segmentation' is neither polygons nor RLE"
    if isinstance(seg, dict) and not ("counts" in seg and "size" in seg):
        return "RLE 'segmentation' without 'counts' and 'size'"
    if not has_seg and not (isinstance(bbox, list) and len(bbox) == 4):
        return "neither 'segmentation' nor 'bbox'"
    return ""
