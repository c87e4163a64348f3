"""The inputs the model reads: word vectors (embed stage) and CNN image features (extract_features)."""
