"""The tests' harnesses and what they share: drawn datasets, image files and archives, local servers
and ports, project copies and DVC commands, stages run, killed, audited or distributed, tiny training
inputs and word vectors."""
