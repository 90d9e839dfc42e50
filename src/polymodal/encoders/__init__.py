"""Encoders per modality, and the pretrained adapter. Importing this package registers every encoder."""
from . import image, pretrained, sequence, text, video  # noqa: F401  (registration)
from .base import ENCODERS, Encoder, InputEncoder, build_encoder

__all__ = ["ENCODERS", "Encoder", "InputEncoder", "build_encoder"]
