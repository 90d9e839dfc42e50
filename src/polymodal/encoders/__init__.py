"""Encoders per modality, the pretrained adapter and transfer from a trained polymodal model. Importing this package
registers every encoder."""
from . import efficientnet, image, lips, pretrained, sequence, tabular, text, transfer, video, whisper  # noqa: F401  (registration)
from .base import ENCODERS, Encoder, InputEncoder, build_encoder

__all__ = ["ENCODERS", "Encoder", "InputEncoder", "build_encoder"]
