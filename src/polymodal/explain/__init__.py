"""Interpretability: modality Shapley values, feature attributions, attention maps, interactions, EMAP."""
from .explainer import explain_global, explain_row

__all__ = ["explain_global", "explain_row"]
