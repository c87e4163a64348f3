"""The train stage's work: the training loop, self-critical training, ensembles, resuming, tf.distribute."""
