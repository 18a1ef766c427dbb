"""Progress lines on stderr, so that a long first install does not look like a hang."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints ``[lab]  12s what is happening`` lines, counting from its creation."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._quiet = quiet
        self._started = time.monotonic()

    def say(self, text: str) -> None:
        """Print one progress line with the seconds elapsed since the start."""
        if not self._quiet:
            elapsed = time.monotonic() - self._started
            print(f"[lab] {elapsed:4.0f}s {text}", file=self._stream, flush=True)
