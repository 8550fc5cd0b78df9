import json
import shutil

import numpy as np
import pytest
import tifffile

from napari_tumorseg.widgets.coco_masks import PREVIEW_PREFIX
from tests.widgets.conftest import add_dock, save_screenshot, wait_for_worker

pytestmark = pytest.mark.gui


def _small_export(src, dst, n=6):
    """A Roboflow-style folder with the first n images of the valid split."""
    d = json.loads((src / "_annotations.coco.json").read_text())
    images = d["images"][:n]
    ids = {i["id"] for i in images}
    d["images"], d["annotations"] = images, [a for a in d["annotations"] if a["image_id"] in ids]
    dst.mkdir(parents=True)
    for im in images:
        shutil.copy(src / im["file_name"], dst / im["file_name"])
    (dst / "_annotations.coco.json").write_text(json.dumps(d))
    return d


def test_preview_then_convert_folder(make_napari_viewer, qtbot, shared_data, tmp_path, screenshot_dir):
    viewer = make_napari_viewer(show=True)
    widget = add_dock(viewer, "COCO to masks")
    d = _small_export(shared_data / "coco_ravirawal" / "valid", tmp_path / "export" / "valid")
    widget.coco_picker.set_path(tmp_path / "export")
    assert widget.load()
    assert widget.image_combo.count() == len(d["images"])
    preview = [l.name for l in viewer.layers if l.name.startswith(PREVIEW_PREFIX)]
    assert len(preview) >= 2  # image + mask (+ polygons when the image has any)
    assert not (tmp_path / "export_masks").exists()  # preview writes nothing
    save_screenshot(viewer, screenshot_dir / "coco_preview.png")

    out = tmp_path / "masks"
    widget.out_picker.set_path(out)
    worker = widget.convert()
    wait_for_worker(qtbot, worker, timeout=60000)
    masks = sorted((out / "valid").glob("*.tif"))
    assert len(masks) == len(d["images"])
    annotated = {a["image_id"] for a in d["annotations"]}
    for im in d["images"]:
        m = tifffile.imread(out / "valid" / (im["file_name"].rsplit(".", 1)[0] + ".tif"))
        assert m.shape == (im["height"], im["width"])
        assert set(np.unique(m)) <= {0, 255}
        assert m.any() == (im["id"] in annotated)
    assert widget.last_report is not None and len(widget.last_report.written) == len(d["images"])


def test_not_coco_json_is_a_notification(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "COCO to masks")
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    widget.coco_picker.set_path(bad)
    assert widget.load() is False


def test_labels_layer_to_coco(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-tumorseg", "mri_phantom")
    widget = add_dock(viewer, "COCO to masks")
    labels = next(l for l in viewer.layers if type(l).__name__ == "Labels")
    widget.labels_combo.setCurrentText(labels.name)
    widget.json_picker.set_path(tmp_path / "out.json")
    path = widget.export_labels()
    coco = json.loads(path.read_text())
    assert len(coco["images"]) == int(np.count_nonzero(labels.data.any(axis=(1, 2))))
    # Refuses to overwrite without the box ticked.
    assert widget.export_labels() is None
