"""Hashed character n-grams: the surface form a sentence embedding smooths over.

MiniLM places "where's my coffee lol. #63081" near several routes at once; the strings
that settle such cases ("where", "#6308", "refund", "delete_") are plainer in the
characters. A head reads both: the embedding and these n-grams, side by side in one
logistic regression. Hashing keeps the featuriser stateless, so an artifact carries no
vocabulary and training and serving cannot disagree about one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix, hstack

__all__ = ["char_ngrams", "with_char_ngrams"]


def char_ngrams(texts: Sequence[str], n_features: int) -> csr_matrix:
    """L2-normalised counts of lower-cased 2–5 character n-grams, hashed into ``n_features``."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        n_features=n_features,
        alternate_sign=False,
        norm="l2",
    )
    return vectorizer.transform(list(texts)).tocsr()


def with_char_ngrams(
    dense: NDArray[np.floating], texts: Sequence[str], n_features: int
) -> NDArray[np.floating] | csr_matrix:
    """``dense`` rows with the texts' n-grams appended (``dense`` itself when 0 features)."""
    if not n_features:
        return dense
    return hstack([csr_matrix(dense), char_ngrams(texts, n_features)]).tocsr()
