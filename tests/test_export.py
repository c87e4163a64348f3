"""The SavedModel export: loaded by TensorFlow alone, in a Python that cannot import this
package, it gives predict's captions for encoded image bytes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from captioner.inference.captioning import ImageCaptioner
from captioner.inference.export import export
from tests.helpers.datasets import jpeg_bytes
from tests.helpers.serving import SETTINGS, predicted, trained_model

pytestmark = pytest.mark.slow

# Run with `python -I` in an empty folder: no PYTHONPATH, no user site, no project on sys.path.
LOAD_AND_CAPTION = """
import json, sys
try:
    import captioner
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("captioner is importable here")
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
images = tf.constant([open(path, "rb").read() for path in sys.argv[2:]])
signature = loaded.signatures["serving_default"](images=images)
endpoint = loaded.serve(images)
print(json.dumps({
    "signature": [caption.decode() for caption in signature["caption"].numpy()],
    "endpoint": [caption.decode() for caption in endpoint["caption"].numpy()],
    "alternatives": [[a.decode() for a in row] for row in endpoint["alternatives"].numpy()],
    "scores": endpoint["scores"].numpy().tolist(),
}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model, pictures = trained_model(folder)
    export(ImageCaptioner(model, SETTINGS), str(folder / "saved_model"))
    return folder, model, pictures


def test_the_savedmodel_alone_gives_predicts_captions(exported, tmp_path):
    folder, model, pictures = exported
    # Textured JPEGs too: TensorFlow's default JPEG decoding gives other pixels than Pillow's.
    rng = np.random.default_rng(0)
    for path in pictures[:3]:
        pixels = np.asarray(Image.open(path).convert("RGB"), np.int16)
        noisy = np.clip(pixels + rng.normal(0, 25, pixels.shape), 0, 255).astype(np.uint8)
        jpeg = path.with_suffix(".jpg")
        jpeg.write_bytes(jpeg_bytes(Image.fromarray(noisy)))
        pictures.append(jpeg)
    # Three images is fewer than one CNN batch, eight spans two: both paddings are exercised.
    pictures = pictures[3:6] + pictures[-8:]
    result = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_AND_CAPTION, str(folder / "saved_model"),
         *map(str, pictures)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = json.loads(result.stdout)
    expected = predicted(model, pictures)
    assert outputs["signature"] == outputs["endpoint"] == [expected[p.name] for p in pictures]
    assert [row[0] for row in outputs["alternatives"]] == outputs["endpoint"]
    # The beams' scores too, which move with any change of pixels or features.
    captioner = ImageCaptioner(model, SETTINGS)
    beams = captioner.caption_features(captioner.extractor.extract(pictures).features)
    assert outputs["alternatives"] == [[a["caption"] for a in c.alternatives] for c in beams]
    np.testing.assert_allclose(outputs["scores"], [[a["score"] for a in c.alternatives]
                                                   for c in beams], rtol=0, atol=1e-5)
