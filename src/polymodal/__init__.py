"""polymodal: multimodal machine learning over text, images, audio, video and signals."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "fit", "load", "ensemble", "Model", "Recipe", "corrupt"]


def __getattr__(name: str):  # keep `import polymodal` light; torch loads on first use
    if name in ("fit", "load", "ensemble", "Model"):
        from . import api

        return getattr(api, name)
    if name == "corrupt":
        from .modalities.corruptions import corrupt

        return corrupt
    if name == "Recipe":
        from .config import Recipe

        return Recipe
    raise AttributeError(name)
