"""Caption scores with the coco-caption scorers of pycocoevalcap, and how varied the captions are.

The test split is scored by coco-caption's protocol (score_captions): the PTB tokenizer, then
BLEU-1..4, METEOR, ROUGE-L and CIDEr, the first two in Java. Validation during training keeps to
Python (validation_scores): the project's own cleaning stands in for the PTB tokenizer, and only
BLEU-4 and CIDEr are computed, in a fraction of a second per epoch; the model card's CIDEr of each
test image is cleaned alike (per_image_cider). Self-critical training's reward is CIDEr-D against
document frequencies fixed over the training split (CiderD).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import precook
from pycocoevalcap.rouge.rouge import Rouge

from captioner.core.text import clean
from captioner.model.java_scorers import meteor, ptb_tokenize

Captions = dict[str, list[str]]
# The key of the references among the texts tokenized together.
REFERENCES = "references"

NGRAMS = 4
# CIDEr-D's Gaussian length penalty and scale, as in coco-caption.
LENGTH_SIGMA = 6.0
CIDER_SCALE = 10.0

TfIdf = tuple[list[dict[tuple[str, ...], float]], list[float], int]


def _check_references(hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> None:
    missing = [image for image in sorted(hypotheses) if not references.get(image)]
    if missing:
        raise ValueError(f"no reference captions for {len(missing)} images, e.g. {missing[0]}")


def _cleaned(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> tuple[Captions, Captions]:
    """Both sides cleaned by the training rules (lowercase, letters only) and space-joined."""
    _check_references(hypotheses, references)
    images = sorted(hypotheses)
    truth = {image: [" ".join(clean(text)) for text in references[image]] for image in images}
    result = {image: [" ".join(clean(hypotheses[image]))] for image in images}
    return truth, result


def _rouge_l(truth: Captions, result: Captions) -> float:
    """Mean ROUGE-L; an empty caption scores 0 (pycocoevalcap divides by its length)."""
    scorer = Rouge()
    return float(np.mean([scorer.calc_score(result[image], truth[image]) if result[image][0]
                          else 0.0 for image in truth]))


def _bleu_and_cider(truth: Captions, result: Captions) -> dict[str, float]:
    bleu, _ = Bleu(4).compute_score(truth, result, verbose=0)
    cider, _ = Cider().compute_score(truth, result)
    scores = {f"bleu{n}": float(value) for n, value in enumerate(bleu, start=1)}
    return {**scores, "cider": float(cider)}


def score_captions(
    captioners: Mapping[str, Mapping[str, str]], references: Mapping[str, Sequence[str]],
    java_path: str,
) -> dict[str, dict[str, float]]:
    """Scores each captioner's captions (one per image; every captioner captions the same images)
    against all the images' references, as coco-caption does: PTB-tokenized, then BLEU-1..4,
    METEOR, ROUGE-L and CIDEr. One tokenizer run and one METEOR process serve them all."""
    images = sorted(next(iter(captioners.values())))
    for name, hypotheses in captioners.items():
        if sorted(hypotheses) != images:
            raise ValueError(f"{name} captions other images than {next(iter(captioners))}")
        _check_references(hypotheses, references)
    texts: dict[tuple[str, str], Sequence[str]] = {
        (REFERENCES, image): references[image] for image in images}
    texts.update({(name, image): [hypotheses[image]] for name, hypotheses in captioners.items()
                  for image in images})
    tokenized = ptb_tokenize(texts, java_path)
    truth = {image: tokenized[REFERENCES, image] for image in images}
    results = {name: {image: tokenized[name, image] for image in images} for name in captioners}
    meteors = meteor(truth, results, java_path)
    return {name: {**_bleu_and_cider(truth, result), "meteor": meteors[name],
                   "rouge_l": _rouge_l(truth, result)}
            for name, result in results.items()}


def validation_scores(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Corpus BLEU-4 and CIDEr alone, for per-epoch validation."""
    scores = _bleu_and_cider(*_cleaned(hypotheses, references))
    return {"bleu4": scores["bleu4"], "cider": scores["cider"]}


def per_image_cider(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Each image's CIDEr (document frequencies over these images), both sides cleaned as for
    validation: what the model card ranks the test images by."""
    truth, result = _cleaned(hypotheses, references)
    _, scores = Cider().compute_score(truth, result)
    return {image: float(score) for image, score in zip(truth, scores, strict=True)}


def diversity(captions: Sequence[str]) -> dict[str, float | int]:
    """The number of different captions (word for word, after cleaning) over the number of captions,
    and the number of distinct words used: a captioner that says the same thing to every dog scores
    well and helps nobody."""
    cleaned = [" ".join(clean(caption)) for caption in captions]
    return {"distinct_captions": len(set(cleaned)) / max(len(cleaned), 1),
            "distinct_words": len({word for caption in cleaned for word in caption.split()})}



class CiderD:
    """CIDEr-D of a caption against one image's references, with document frequencies counted over
    a fixed corpus of reference sets (the training split's).

    pycocoevalcap's scorer counts document frequencies over the captions it is given at once, so
    per batch its scores would change with the batch; reinforcement needs one fixed reward. The
    n-gram counting is pycocoevalcap's (`precook`), the formula its CIDEr-D.
    """

    def __init__(self, corpus: Sequence[Sequence[str]]) -> None:
        counted = [[precook(" ".join(clean(caption)), NGRAMS) for caption in references]
                   for references in corpus]
        self._document_frequency = Counter(
            ngram for references in counted for ngram in {g for counts in references for g in counts})
        self._log_documents = math.log(len(counted))
        self._references = [[self._tf_idf(counts) for counts in references] for references in counted]

    def _tf_idf(self, counts: dict[tuple[str, ...], int]) -> TfIdf:
        vectors: list[dict[tuple[str, ...], float]] = [{} for _ in range(NGRAMS)]
        norms = [0.0] * NGRAMS
        for ngram, count in counts.items():
            weight = count * (self._log_documents - math.log(max(1.0, self._document_frequency[ngram])))
            vectors[len(ngram) - 1][ngram] = weight
            norms[len(ngram) - 1] += weight * weight
        length = sum(count for ngram, count in counts.items() if len(ngram) == 1)
        return vectors, [math.sqrt(norm) for norm in norms], length

    def score(self, caption: str, document: int) -> float:
        """CIDEr-D of `caption` (cleaned words, space-separated) against the references of corpus
        entry `document`."""
        vectors, norms, length = self._tf_idf(precook(caption, NGRAMS))
        total = 0.0
        for reference_vectors, reference_norms, reference_length in self._references[document]:
            similarity = 0.0
            for n in range(NGRAMS):
                reference = reference_vectors[n]
                overlap = sum(min(weight, reference.get(ngram, 0.0)) * reference.get(ngram, 0.0)
                              for ngram, weight in vectors[n].items())
                if norms[n] and reference_norms[n]:
                    overlap /= norms[n] * reference_norms[n]
                similarity += overlap
            penalty = math.exp(-((length - reference_length) ** 2) / (2 * LENGTH_SIGMA ** 2))
            total += similarity / NGRAMS * penalty
        return total / len(self._references[document]) * CIDER_SCALE
