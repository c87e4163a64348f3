"""The score wrapper returns pycocoevalcap's numbers."""

from __future__ import annotations

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from captioner.model.scoring import diversity, score_captions, validation_scores

REFERENCES = {
    "1.jpg": ["A dog runs across the grass .", "A brown dog is running on a lawn ."],
    "2.jpg": ["Two children play in the water .", "Kids splash in a pool ."],
    "3.jpg": ["A man rides a bike down a hill .", "A cyclist goes down the road ."],
}
HYPOTHESES = {"1.jpg": "a dog is running on the grass", "2.jpg": "two kids play in the pool",
              "3.jpg": "a man rides a bike"}


def test_scores_match_pycocoevalcap_on_cleaned_text():
    truth = {k: [" ".join(t.lower().replace(" .", "").split()) for t in v]
             for k, v in REFERENCES.items()}
    result = {k: [v] for k, v in HYPOTHESES.items()}
    bleu, _ = Bleu(4).compute_score(truth, result, verbose=0)
    cider, _ = Cider().compute_score(truth, result)
    rouge, _ = Rouge().compute_score(truth, result)
    scores = score_captions(HYPOTHESES, REFERENCES)
    assert [scores[f"bleu{n}"] for n in range(1, 5)] == pytest.approx(bleu)
    assert scores["cider"] == pytest.approx(cider)
    assert scores["rouge_l"] == pytest.approx(rouge)
    assert validation_scores(HYPOTHESES, REFERENCES) == pytest.approx(
        {"bleu4": bleu[3], "cider": cider})
    assert 0.3 < scores["bleu1"] < 1.0


def test_a_perfect_caption_scores_one_and_an_empty_one_zero():
    perfect = score_captions({"1.jpg": "a dog runs across the grass"}, REFERENCES)
    assert perfect["bleu4"] == pytest.approx(1.0)
    assert perfect["rouge_l"] == pytest.approx(1.0)
    empty = score_captions({"1.jpg": ""}, REFERENCES)
    assert empty["bleu1"] == pytest.approx(0.0) and empty["rouge_l"] == 0.0


def test_diversity_counts_distinct_captions_after_cleaning_and_distinct_words():
    captions = ["A dog runs.", "a dog runs", "a cat sleeps", "a dog runs on grass"]
    assert diversity(captions) == {"distinct_captions": 0.75, "distinct_words": 7}
    assert diversity([]) == {"distinct_captions": 0.0, "distinct_words": 0}
