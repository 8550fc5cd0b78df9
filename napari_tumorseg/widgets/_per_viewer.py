"""Re-export: the per-viewer registry lives in :mod:`napari_tumorseg.per_viewer` (Qt-free, so the
reader can use it without importing the widgets)."""

from napari_tumorseg.per_viewer import PerViewer, real_viewer

__all__ = ["PerViewer", "real_viewer"]
