"""How much the caption service lets one request send and how much work it lets wait: its own
module, so that the command line's flags take their defaults from here without loading the service."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceLimits:
    """How much one request may send and how much work may wait."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_queue: int = 64
    batch_window_s: float = 0.02
