"""captioner: the library behind the DVC stages of the caption pipeline, one subpackage per step.

- `core`: what every step shares: paths, params, files, errors, text, sources, the quiet start.
- `acquire`: the `download` and `pretrained` stages' work: fetching, unpacking, placing files.
- `captions`: the `tokenize` stage's: caption formats, splits, vocabulary.
- `inputs`: the `embed` and `extract_features` stages': word vectors and CNN features.
- `model`: the captioner network, its decoding, saving and scoring.
- `training`: the `train` stage's: the training loop, self-critical training, ensembles, resuming.
- `reporting`: the `evaluate` stage's report, epoch table and sample plots.
- `inference`: the model's use after training: predict, the caption service, the SavedModel export.
- `publishing`: the `publish` stage's: the model as the `captioner` DVC artifact, with its card.

Imports run one way, down to `core`: `training`, `reporting` and `inference` use the subpackages
listed above them, never one another; `publishing` sits above them all and may use any
(tests/test_architecture.py).
"""
