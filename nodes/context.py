"""Context pruning: keep only the documents relevant to a request before the LLM sees them.

Documents are embedded once with the same encoder as the router; a request keeps the
top-k by cosine similarity above a floor, so the LLM reads a few hundred tokens instead
of the whole document set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agentflow.models.encoder import Encoder

__all__ = ["DocumentIndex"]


class DocumentIndex:
    """A small in-memory vector index over ``{"id", "title", "text"}`` documents."""

    def __init__(self, documents: Sequence[dict[str, str]], encoder: Encoder) -> None:
        self.documents = list(documents)
        self.encoder = encoder
        texts = [f"{d.get('title', '')}. {d['text']}" for d in self.documents]
        self._matrix = encoder.encode(texts) if texts else np.zeros((0, encoder.dim), np.float32)

    def prune(self, query: str, k: int = 2, min_similarity: float = 0.2) -> list[dict[str, Any]]:
        """The ``k`` most similar documents (with their score), best first."""
        if not self.documents:
            return []
        sims = self._matrix @ self.encoder.encode_one(query)
        order = np.argsort(sims)[::-1][:k]
        return [
            {**self.documents[int(i)], "score": round(float(sims[int(i)]), 3)}
            for i in order
            if sims[int(i)] >= min_similarity
        ]
