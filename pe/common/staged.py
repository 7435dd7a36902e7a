"""Installing a fetched folder so that a fetch that breaks half-way never looks complete."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["staged_folder"]


@contextmanager
def staged_folder(folder: Path, marker: str, stamp: str) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to fill. When the block ends without an
    error, ``marker`` (holding ``stamp``) is written into it last, it is made readable
    by every user (a container's workers run as another user than the build that
    fetched) and it replaces ``folder``; else it is removed. ``folder`` without
    ``marker`` is a broken fetch."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=folder.parent))
    try:
        yield staging
        (staging / marker).write_text(stamp)
        staging.chmod(0o755)
        if folder.exists():  # a broken earlier fetch
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
