"""napari-tumorseg: brain-tumour MRI segmentation for napari.

The core (``io``, ``coco``, ``models``, ``training``, ``inference``, ``export``,
``metrics``) imports without Qt; ``widgets`` and the npe2 hooks are thin drivers.
"""

__version__ = "0.1.0"
