"""The retrieval baseline (Devlin et al. 2015): no decoder, only the training captions.

A test image's k nearest training images by the cosine of their CNN features (scikit-learn's
NearestNeighbors) give 5k candidate captions; the baseline's caption is the candidate that agrees
most with the others: the highest mean cosine similarity of TF-IDF weighted 1- to 4-gram vectors
(scikit-learn's TfidfVectorizer, document frequencies from the training captions), as CIDEr weighs
n-grams. k is chosen among evaluate.retrieval_k by validation CIDEr, never on the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.neighbors import NearestNeighbors

from captioner.core.text import clean
from captioner.model.scoring import validation_scores
from captioner.model.splits import Split


def _cleaned(caption: str) -> str:
    return " ".join(clean(caption))


@dataclass(frozen=True)
class RetrievalChoice:
    """The k chosen and every candidate k's validation CIDEr."""

    k: int
    val_cider: dict[int, float]


class RetrievalBaseline:
    """Captions images by the consensus caption of their nearest training images."""

    def __init__(self, train: Split) -> None:
        self.captions = [caption for record in train.records for caption in record["captions"]]
        # Each training image's rows among the captions.
        ends = np.cumsum([len(record["captions"]) for record in train.records])
        self._caption_rows = [np.arange(end - len(record["captions"]), end)
                              for record, end in zip(train.records, ends, strict=True)]
        self.vectors = TfidfVectorizer(preprocessor=_cleaned, token_pattern=r"\S+",
                                       ngram_range=(1, 4)).fit_transform(self.captions)
        self.neighbours = NearestNeighbors(metric="cosine").fit(train.features)

    def caption(self, features: np.ndarray, ks: Sequence[int]) -> dict[int, list[str]]:
        """For each k of `ks`, the consensus caption of every image's k nearest training images."""
        largest = min(max(ks), len(self._caption_rows))
        _, nearest = self.neighbours.kneighbors(features, n_neighbors=largest)
        return {k: [self._consensus(images[:k]) for images in nearest] for k in ks}

    def _consensus(self, images: np.ndarray) -> str:
        rows = np.concatenate([self._caption_rows[image] for image in images])
        if len(rows) == 1:
            return self.captions[rows[0]]
        candidates = self.vectors[rows]
        similarity = (candidates @ candidates.T).toarray()
        agreement = (similarity.sum(axis=1) - similarity.diagonal()) / (len(rows) - 1)
        return self.captions[rows[int(np.argmax(agreement))]]


def choose_k(baseline: RetrievalBaseline, val: Split, ks: Sequence[int]) -> RetrievalChoice:
    """The k of `ks` whose captions of the validation images score the highest CIDEr (the
    smallest such k on a tie)."""
    captions = baseline.caption(val.features, ks)
    references = {record["image"]: record["captions"] for record in val.records}
    scores = {k: validation_scores({record["image"]: caption for record, caption
                                    in zip(val.records, captions[k], strict=True)},
                                   references)["cider"]
              for k in ks}
    best = max(sorted(ks), key=lambda k: scores[k])
    return RetrievalChoice(best, scores)
