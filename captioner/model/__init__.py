"""The captioner network, its decoding (beam search), saving and loading, and its scores."""
