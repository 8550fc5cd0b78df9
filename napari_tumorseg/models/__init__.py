"""Model zoo of the five papers (see ../shared/seeds/README.md), behind one registry."""

import importlib

from napari_tumorseg.models.registry import (  # noqa: F401
    create_model,
    get_info,
    list_models,
    model_info,
    register_model,
)

# Each module registers its model(s) on import. A module not written yet is skipped
# so the registry always holds what exists.
for _name in ("unet", "lintunet", "hybrid_unet", "segformer", "convnextv2", "setr", "glims"):
    try:
        importlib.import_module(f"napari_tumorseg.models.{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"napari_tumorseg.models.{_name}":
            raise
