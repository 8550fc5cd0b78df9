"""Model zoo of the five papers (see ../shared/seeds/README.md), behind one registry."""

import importlib

from napari_tumorseg.models.registry import (  # noqa: F401
    RECIPE_NAMES,
    Recipe,
    create_model,
    default_recipe,
    get_info,
    get_recipe,
    list_models,
    model_info,
    register_model,
)

# Each module registers its model on import (heavy libraries load on first build).
for _name in ("unet", "lintunet", "hybrid_unet", "segformer", "convnextv2", "setr", "glims"):
    importlib.import_module(f"napari_tumorseg.models.{_name}")
