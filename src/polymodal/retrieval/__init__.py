"""Retrieval in a joint embedding space: embedders (polymodal contrastive models, Hugging Face dual encoders), a
faiss index on disk, and zero-shot classification with text prompts."""
from .embedder import Embedder, HFDualEncoder, ModelEmbedder, modality_of_file, open_embedder
from .index import VectorIndex
from .zeroshot import zero_shot

__all__ = ["Embedder", "HFDualEncoder", "ModelEmbedder", "VectorIndex", "modality_of_file", "open_embedder",
           "zero_shot"]
