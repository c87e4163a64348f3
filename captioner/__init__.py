"""captioner: the shared library behind the DVC stages of the Flickr8k caption pipeline."""
