"""captioner: the shared library behind the DVC stages of the Flickr8k caption pipeline."""

import os

# TensorFlow's C++ start-up notices (oneDNN, CPU features) drown the stages' own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
