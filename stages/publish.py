"""Stage publish: the trained model and its model card in published/, the folder dvc.yaml declares
as the `captioner` artifact (see captioner.publishing and docs/sharing.md)."""

from __future__ import annotations

from captioner.core import quiet_start

quiet_start.install()

from captioner.core import params
from captioner.core.errors import run_stage
from captioner.core.paths import (
    DOWNLOAD_RECORD,
    EVAL_METRICS,
    FEATURES,
    MODELS,
    PHOTOS,
    PRETRAINED_RECORD,
    PUBLISHED,
    TEST_CAPTIONS,
    TOKENIZE_RECORD,
    TRAIN_SUMMARY,
    split_file,
)
from captioner.publishing.publish import PublishInputs, StageParams, write_card

INPUTS = PublishInputs(models=MODELS, download_record=DOWNLOAD_RECORD,
                       tokenize_record=TOKENIZE_RECORD, pretrained_record=PRETRAINED_RECORD,
                       train_summary=TRAIN_SUMMARY, eval_metrics=EVAL_METRICS,
                       test_captions=TEST_CAPTIONS, features=FEATURES,
                       test_split=split_file("test"), photos=PHOTOS)


def main() -> None:
    tokenize = params.load(params.TokenizeParams)
    embed = params.load(params.EmbedParams)
    extract_features = params.load(params.ExtractFeaturesParams)
    train = params.load(params.TrainParams)
    evaluate = params.load(params.EvaluateParams)
    card = write_card(INPUTS, StageParams(tokenize, embed, extract_features, train, evaluate),
                      PUBLISHED)
    print(f"publish: {PUBLISHED}: {card['headline']['text']}")


if __name__ == "__main__":
    run_stage(main)
