"""COCO export of a labels volume reads back with its label values, however large."""

from __future__ import annotations

import numpy as np

from napari_tumorseg.export.coco_labels import export_labels_coco, read_coco_labels


def test_label_70000_reads_back_without_wrapping(tmp_path):
    """read_coco_labels painted into a uint16 volume: 70000 came back as 4464."""
    labels = np.zeros((3, 24, 20), np.uint32)
    labels[1, 4:12, 3:9] = 70000
    labels[1, 15:20, 12:18] = 3
    labels[2, 2:6, 2:6] = 65535
    out = export_labels_coco(labels, tmp_path / "big.json", category_names={70000: "rare", 3: "core"})
    back = read_coco_labels(out)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    # Values that fit keep the narrow type.
    small = np.where(labels == 70000, 7, labels % 256).astype(np.uint8)
    np.testing.assert_array_equal(read_coco_labels(export_labels_coco(small, tmp_path / "s.json")), small)
    assert read_coco_labels(tmp_path / "s.json").dtype == np.uint8
