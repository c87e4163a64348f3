"""`python -m captioner export`: the model as a TensorFlow SavedModel that captions encoded images.

The serving signature takes JPEG, PNG, GIF or BMP bytes and runs everything in one graph: decoding
and resizing, the CNN, and the project's beam search with the chosen decoding settings (flags, else
the model card's, else the evaluate params) baked in. It needs TensorFlow alone, so
`tf.saved_model.load` and TensorFlow Serving use it as it is. The CNN runs
a batch in the service's shapes (captioning.cnn_shape), so an image gets predict's features.
Unlike predict's Pillow decoding, TensorFlow's ignores EXIF orientation and a transparent pixel's
alpha, and resizes with its own bilinear filter: images already upright, opaque and 224x224 get
predict's exact caption.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from captioner.core.errors import PipelineError
from captioner.core.text import END_ID, PAD_ID
from captioner.inference.captioning import ImageCaptioner, cnn_shape
from captioner.inputs.pixels import IMAGE_SIZE
from captioner.model.decoding import beam_search, compiled
from captioner.model.network import decoding_models

ENDPOINT = "serve"


def _pixels(encoded: tf.Tensor) -> tf.Tensor:
    # libjpeg's accurate integer DCT, which Pillow uses: TensorFlow's default DCT gives other pixels.
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
    resized = tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _captions(words: tf.Tensor, vocabulary: tf.Tensor) -> tf.Tensor:
    """Caption strings from beam word ids (..., max_length), as text.decode joins them."""
    kept = (words != PAD_ID) & (words != END_ID)
    spaced = tf.where(kept, tf.gather(vocabulary, words) + " ", "")
    return tf.strings.strip(tf.strings.reduce_join(spaced, axis=-1))


def export(captioner: ImageCaptioner, folder: Path) -> None:
    """Writes the SavedModel of `captioner` into `folder` (new, or empty); its endpoint `serve`
    (and the serving_default signature) maps a batch of encoded images to their captions.
    PipelineError when it cannot be written."""
    extractor = captioner.extractor
    batch_size = extractor.batch_size
    models = decoding_models(captioner.trained.model)
    encode, step = compiled(models.encode_image), compiled(models.step)
    vocabulary = tf.constant(captioner.trained.vocabulary)
    settings = captioner.settings

    # The service's CNN batch shape for each image count up to batch_size; more use batch_size.
    shapes = tf.constant([cnn_shape(count, batch_size) for count in range(1, batch_size + 1)])

    def caption_images(images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.map_fn(_pixels, images, fn_output_signature=tf.uint8)
        count = tf.shape(pixels)[0]
        shape = shapes[tf.clip_by_value(count, 1, batch_size) - 1]
        padded = tf.pad(pixels, [[0, -count % shape], [0, 0], [0, 0], [0, 0]])
        batches = tf.reshape(padded, [-1, shape, IMAGE_SIZE, IMAGE_SIZE, 3])
        features = tf.map_fn(lambda batch: extractor.features_of(tf.cast(batch, tf.float32)),
                             batches, fn_output_signature=tf.float32)
        features = tf.reshape(features, [-1, *extractor.feature_shape])[:count]
        # predict's features are stored as float16.
        features = tf.cast(tf.cast(features, tf.float16), tf.float32)
        words, scores = beam_search(encode, step, features, settings.beam_size,
                                    settings.max_length, settings.length_penalty)
        alternatives = _captions(words, vocabulary)
        return {"caption": alternatives[:, 0], "alternatives": alternatives, "scores": scores}

    archive = keras.export.ExportArchive()
    archive.track(extractor.model)
    archive.track(captioner.trained.model)
    # A tf.function of its own: the archive would trace a plain function without AutoGraph,
    # which beam search's loop needs.
    archive.add_endpoint(ENDPOINT, tf.function(caption_images, input_signature=[
        tf.TensorSpec([None], tf.string, name="images")]))
    try:
        archive.write_out(str(folder), verbose=False)
    except (OSError, tf.errors.OpError) as error:
        raise PipelineError(f"--out {folder}: cannot write the SavedModel: "
                            f"{getattr(error, 'message', None) or error}") from None
