"""The Train dock's data field takes several folders (issue 15): sources of several BraTS
editions train together."""

from __future__ import annotations

import pytest

from napari_tumorseg.training.datasets import data_paths, open_source
from tests.widgets.conftest import add_dock

pytestmark = pytest.mark.gui


def test_add_folder_builds_a_config_with_both_sources(make_napari_viewer, shared_data, tmp_path):
    viewer = make_napari_viewer()
    widget = add_dock(viewer, "Train")
    widget.model_combo.setCurrentText("unet")
    widget.src_path.setChecked(True)
    a, b = shared_data / "brats2013_deepmedic", shared_data / "brats_multi_year"
    widget.data_picker.set_path(a)
    widget.add_data_path(b)
    assert widget.data_picker.edit.text() == f"{a}; {b}"
    widget.out_picker.set_path(tmp_path / "run")
    cfg = widget.build_config()
    assert data_paths(cfg.data) == [a, b]
    source = open_source(cfg.data)
    assert len(source.refs) == 8 and {r.source for r in source.refs} == {str(a), str(b)}
    # One folder, as before.
    widget.data_picker.set_path(a)
    assert data_paths(widget.build_config().data) == [a]
