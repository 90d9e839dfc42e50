"""Training: the Lightning module, the trainer factory and the fit pipeline."""
from .fit import fit_model, prepare

__all__ = ["fit_model", "prepare"]
