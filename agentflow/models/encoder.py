"""Sentence embeddings from a verified MiniLM (or user) encoder, loaded once per process."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agentflow.models.registry import ModelFile, encoder_file
from agentflow.settings import Settings

__all__ = ["Encoder", "load_encoder"]


class Encoder:
    """A sentence-transformers model on CPU producing L2-normalised embeddings."""

    def __init__(self, model: ModelFile, n_threads: int = 2) -> None:
        # Never reach for a hub: the folder is local and verified.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(n_threads)
        self.model_file = model
        # transformers draws a "Loading weights" bar on stderr for a local folder too.
        hf_logging.disable_progress_bar()
        self._model: Any = SentenceTransformer(str(model.path), device="cpu")
        self._torch = torch
        self._lock = threading.Lock()
        self.dim: int = int(self._model.get_embedding_dimension() or 384)

    @property
    def name(self) -> str:
        """Model name for ``Decision.model``."""
        return self.model_file.name

    @property
    def sha256(self) -> str:
        """Digest of the verified folder (every file: weights, tokenizer, configs); heads
        are bound to it and refuse another encoder."""
        return self.model_file.sha256

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> NDArray[np.float32]:
        """Embeddings of ``texts`` as an (n, dim) float32 array with unit rows."""
        with self._lock, self._torch.inference_mode():
            out = self._model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)

    def encode_one(self, text: str) -> NDArray[np.float32]:
        """Embedding of one text, shape (dim,)."""
        return self.encode([text], batch_size=1)[0]


_cache_lock = threading.Lock()


@cache
def _load(path: Path, sha256: str, name: str, weights: Path, n_threads: int) -> Encoder:
    return Encoder(ModelFile(name, path, weights, sha256), n_threads=n_threads)


def load_encoder(settings: Settings) -> Encoder:
    """The configured encoder, verified by sha256 and loaded once per process."""
    model = encoder_file(settings)
    with _cache_lock:
        return _load(model.path, model.sha256, model.name, model.weights, settings.n_threads)
