"""What the tests share: drawn datasets and archives, a local HTTP server, project copies and DVC
commands, tiny training inputs and word vectors."""
