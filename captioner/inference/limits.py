"""How much the caption service lets clients send, hold and make it do: its own module, so that the
command line's flags take their defaults from here without loading the service."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may send, how long a client may take, and how much work may wait.

    max_queue counts the images received and not yet answered (waiting for a decoder, decoding,
    waiting for or in a batch); past it an image gets 503. Uploads still arriving are bounded by
    max_connections and client_timeout_s, and spooled to temporary files past 256 KB.
    decoders is how many uploads are decoded at once, each holding a large image at most twice at
    full size, so it bounds the memory decoding takes. client_timeout_s bounds the time a client
    has to send a request's headers (from connecting, or from its previous answer) and, again, its
    body. max_connections caps the open connections: past it, the one that has waited longest for
    its next request's headers is closed.
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_queue: int = 64
    batch_window_s: float = 0.02
    decoders: int = field(default_factory=lambda: os.cpu_count() or 1)
    client_timeout_s: float = 20.0
    max_connections: int = 512
