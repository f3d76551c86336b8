"""Making what was written survive a crash: fsync of a file, and of a folder's entries.

A file written to a temporary name, synced, renamed into place, and its folder synced is
there whole after a crash, or not at all. Checkpoints and reading segments both rely on it.
"""

from __future__ import annotations

import os
from pathlib import Path


def sync_file(path: Path) -> None:
    """Flush a file's data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_folder(folder: Path) -> None:
    """Make the files created, renamed or removed in a folder durable."""
    sync_file(folder)
