"""The fusion zoo. Importing this package registers every method; a new one is a file plus a line here."""
from . import bottleneck, cross_attention, early, film, gated, late, simple, tensor  # noqa: F401  (registration)
from .base import FUSIONS, Fusion, FusionConfig

__all__ = ["FUSIONS", "Fusion", "FusionConfig"]
