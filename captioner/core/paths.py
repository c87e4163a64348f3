"""Where every stage reads and writes: the one list of the pipeline's data paths.

dvc.yaml declares the same paths as deps and outs; tests/test_dvc_yaml.py runs each stage and checks
that the files it opens are exactly the ones declared. What people compare across experiments (test
scores, caption diversity, speeds) goes to metrics/, in git; what a stage records of its data
(sources and their sha256, split counts, skipped lines, per-member training details) to
data/records/, cached and versioned by DVC like the data it describes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PARAMS_FILE = Path("params.yaml")
# What a figure's file name keeps of an image's name; runs of anything else become "_".
UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")

RAW = Path("data/raw")
RAW_IMAGES = RAW / "images"
RAW_TEXT = RAW / "text"
# Where the captions came from: download.text_url as given, and the file's name when it named one.
RAW_TEXT_SOURCE = RAW / "text_source.json"
# Unfinished remote downloads, kept across runs to resume; not a DVC output, so DVC never deletes it.
DOWNLOAD_PARTIAL = RAW / ".partial"
RECORDS = Path("data/records")
DOWNLOAD_RECORD = RECORDS / "download.json"

# The pretrained files that params name (word vectors, CNN weights), each folder holding a file
# under a fixed name and a manifest, cached by DVC; beside each, a copy of its manifest kept in git,
# so that a clone whose cache lacks the folder still knows a built-in source. The stage's scratch
# (unfinished downloads) is not a DVC output. Files the user brings into the project for the
# params to name (`dvc import-url`, `dvc add`) go into pretrained/, a dependency of the stage.
PRETRAINED_VECTORS = Path("data/pretrained/vectors")
PRETRAINED_WEIGHTS = Path("data/pretrained/weights")
PRETRAINED_VECTORS_MANIFEST = Path("data/pretrained/vectors.json")
PRETRAINED_WEIGHTS_MANIFEST = Path("data/pretrained/weights.json")
PRETRAINED_SCRATCH = Path("data/.pretrained")
PRETRAINED_SOURCES = Path("pretrained")
PRETRAINED_RECORD = RECORDS / "pretrained.json"

CAPTIONS = Path("data/captions")
VOCABULARY = CAPTIONS / "vocab.json"
TOKENIZE_RECORD = RECORDS / "tokenize.json"

EMBEDDINGS_DIR = Path("data/embeddings")
EMBEDDINGS = EMBEDDINGS_DIR / "matrix.npy"
EMBED_RECORD = RECORDS / "embed.json"

FEATURES = Path("data/features")
# The mirrored photos' files beside the others in FEATURES: mirrored_features.npy, mirrored_grid.npy.
MIRRORED_PREFIX = "mirrored_"
FEATURES_RECORD = RECORDS / "extract_features.json"
FEATURES_SPEED = Path("metrics/speed/extract_features.json")

MODELS = Path("models")
EPOCH_MODEL_NAME = re.compile(r"epoch_(\d+)\.keras")
TRAIN_RUN = Path("data/train_run")
# DVCLive's summary (last epoch's metrics, best_epoch, each member's) and the train stage's table of
# every epoch's loss, val_loss, val_bleu4 and val_cider, which dvc.yaml's plots chart.
TRAIN_LIVE = RECORDS / "train"
TRAIN_SUMMARY = TRAIN_LIVE / "metrics.json"
TRAIN_HISTORY = Path("metrics/train/epochs.tsv")
TRAIN_SPEED = Path("metrics/speed/train.json")

EVALUATION = Path("data/evaluation")
# One PNG per sample image with its caption at every epoch: evaluate's image plots in dvc.yaml.
SAMPLE_PLOTS = Path("data/sample_plots")
EVAL_METRICS = Path("metrics/eval.json")
EVAL_SPEED = Path("metrics/speed/evaluate.json")
TEST_CAPTIONS = EVALUATION / "captions.jsonl"

# The published model and its card: the folder dvc.yaml declares as the `captioner` artifact. The
# photos unlike the training data's that the card captions are kept in git, with their licences.
PUBLISHED = Path("published")
PHOTOS = Path("photos")


def split_file(name: str) -> Path:
    """The tokenize stage's records of one split (train, val or test)."""
    return CAPTIONS / f"{name}.jsonl"


@dataclass(frozen=True)
class ModelFolder:
    """The layout of the train stage's models folder (and of a training run's folder): the published
    model, with train.save_every_epoch the model of every epoch (epochs/epoch_001.keras, ...), and
    for an ensemble (train.ensemble > 1) its members, each laid out as a folder of one model, while
    model.keras is the ensemble."""

    folder: Path

    @property
    def model(self) -> Path:
        return self.folder / "model.keras"

    @property
    def epochs(self) -> Path:
        return self.folder / "epochs"

    @property
    def members(self) -> Path:
        return self.folder / "members"

    def member(self, number: int) -> ModelFolder:
        """The folder of member `number` (from 1)."""
        return ModelFolder(self.members / f"member_{number}")


BEST_MODEL = ModelFolder(MODELS).model


def epoch_model_name(number: int) -> str:
    """The file name of the model of epoch `number` (from 1); EPOCH_MODEL_NAME matches it."""
    return f"epoch_{number:03d}.keras"


def figure_name(position: int, image: str, digits: int) -> str:
    """A PNG's name for the image at `position` (from 0) among those drawn: its place from 1 with
    `digits` digits, then the image's name or id (folders and all) without its extension, made
    safe for any file system."""
    stem = image.removesuffix(Path(image).suffix)
    return f"{position + 1:0{digits}d}_{UNSAFE_IN_NAME.sub('_', stem)}.png"
