"""What the tests share: drawn datasets, a local HTTP server, project copies and DVC commands, fault
harnesses and the scripts tests run in subprocesses."""
