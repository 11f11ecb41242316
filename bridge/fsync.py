"""Making a new or renamed directory entry durable (pure OS calls, no policy)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """fsync ``directory`` itself, so a file created or renamed in it survives a crash.

    Raises ``OSError`` like ``os.fsync``; callers translate it at their edge.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
