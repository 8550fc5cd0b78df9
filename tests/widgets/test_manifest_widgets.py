"""Every dock widget opens from the manifest in a real viewer; samples and reader work."""

import numpy as np
import pytest
from npe2 import PluginManifest

from tests.widgets.conftest import save_screenshot

pytestmark = pytest.mark.gui

WIDGETS = [w.display_name for w in PluginManifest.from_distribution("napari-tumorseg").contributions.widgets]


@pytest.mark.parametrize("name", WIDGETS)
def test_widget_opens_from_manifest(make_napari_viewer, name, screenshot_dir):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-tumorseg", "mri_phantom")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-tumorseg", name)
    assert widget is not None and dock.widget() is not None
    save_screenshot(viewer, screenshot_dir / f"widget_{name.replace(' ', '_')}.png")


def test_sample_phantom_is_a_dicom_study(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-tumorseg", "mri_phantom")
    kinds = sorted(type(l).__name__ for l in layers)
    assert kinds == ["Image", "Labels"]
    image = next(l for l in layers if type(l).__name__ == "Image")
    assert image.data.shape == (32, 128, 128)
    np.testing.assert_allclose(image.scale, (4.0, 1.8, 1.8))
    assert "dicom" in image.metadata


def test_sample_2d_slice(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-tumorseg", "mri_slice_2d")
    image, labels = layers
    assert image.data.shape[-2:] == (640, 640)
    assert labels.data.shape == image.data.shape and labels.data.any()


def test_dicom_folder_opens_through_the_reader(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    layers = viewer.open(str(shared_data / "dicom_brainix"), plugin="napari-tumorseg")
    assert len(layers) == 3
    assert all(l.data.shape[0] == 22 for l in layers)
    assert sum(type(l).__name__ == "Labels" for l in layers) == 1
