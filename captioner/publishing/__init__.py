"""The publish stage's work: the trained model as the `captioner` DVC artifact, with its model card."""
