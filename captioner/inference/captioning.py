"""A trained model ready to caption: the model, the CNN it was trained on and the decoding settings,
loaded once and used by predict, the service and the export alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioner.core.errors import PipelineError
from captioner.core.params import DECODE_BATCH_SIZE, DecodingSettings
from captioner.core.text import decode
from captioner.inference.model_card import file_md5, read_card
from captioner.inputs.features import FeatureExtractor
from captioner.model.artifacts import CaptionModel, load_model, model_info_path
from captioner.model.decoding import Decoder
from captioner.model.network import reads_regions


def cnn_shape(count: int, batch_size: int) -> int:
    """The CNN batch shape for `count` images: the next power of two, at least 2, at most the
    extractor's batch_size.

    A batch of a few images padded to the extractor's full shape costs as much as a full one; in
    these shapes it costs about its share. On the CPUs tested (oneDNN), every shape from 2 up gives
    the same features bit for bit as the full one; only a single image runs other kernels, hence
    the 2. tests/test_features.py checks this on the machine it runs on.
    """
    return min(batch_size, max(2, 1 << (count - 1).bit_length()))


@dataclass(frozen=True)
class Caption:
    """An image's best caption and the beam's other hypotheses, each with its ranking score
    (log-probability over length ** length_penalty), best first."""

    caption: str
    alternatives: list[dict[str, str | float]]


def model_extractor(trained: CaptionModel, model_path: Path) -> FeatureExtractor:
    """The feature extractor (backbone, weights, batch shape) a model was trained with, giving the
    regions when the model reads them; refused when the model cannot use its features."""
    extractor = FeatureExtractor.from_mapping(trained.backbone, str(model_info_path(model_path)),
                                              grid=reads_regions(trained.model))
    expected = tuple(trained.model.inputs[0].shape[1:])  # the image features
    if extractor.feature_shape != expected:
        raise PipelineError(f"{model_path}: expects image features shaped {expected} but "
                            f"{extractor.backbone} gives {extractor.feature_shape}")
    return extractor


class ImageCaptioner:
    """A trained model with its CNN, decoding with the given settings, `batch_size` images at once;
    `card` is the model card published beside it (None for the train stage's models/)."""

    def __init__(self, model_path: Path, settings: DecodingSettings,
                 batch_size: int = DECODE_BATCH_SIZE) -> None:
        self.trained = load_model(model_path)
        self.extractor = model_extractor(self.trained, model_path)
        self.decoder = Decoder.from_model(self.trained.model)
        self.settings, self.batch_size = settings, batch_size
        self.identity = {"path": str(model_path), "md5": file_md5(model_path)}
        self.card = read_card(model_path, self.identity["md5"])

    def caption_features(self, features: np.ndarray) -> list[Caption]:
        """The captions of images given by their CNN features."""
        vocabulary = self.trained.vocabulary
        beams = self.decoder.beams(features, self.settings, self.batch_size)
        return [Caption(decode(image_beams[0].ids, vocabulary),
                        [{"caption": decode(beam.ids, vocabulary), "score": beam.score}
                         for beam in image_beams])
                for image_beams in beams]

    def caption_pixels(self, pixels: np.ndarray) -> list[Caption]:
        """The captions of decoded images, uint8 (n, 224, 224, 3), through the CNN in batches of
        the smallest shape that holds them (see cnn_shape)."""
        size = self.extractor.batch_size
        features = np.concatenate([
            self.extractor.forward(batch, cnn_shape(len(batch), size))
            for batch in (pixels[start:start + size] for start in range(0, len(pixels), size))])
        return self.caption_features(features)
