"""The progress callback type shared by every long-running call."""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)``: called as work advances; ``total`` may grow between calls."""
