"""Point-and-click segmentation: prompts, engines (classic and learned) and the click robot.

Qt-free: the Segment-by-clicks dock and ``tumorseg evaluate-clicks`` drive the same API.
"""

from napari_tumorseg.interactive.prompts import ClickEngine, Prompts

__all__ = ["ClickEngine", "Prompts"]
