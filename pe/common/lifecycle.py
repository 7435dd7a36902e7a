"""Child processes that do not outlive their parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["background_helper", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to stop this process when its parent dies, even by SIGKILL.

    Runs in the child (a ``preexec_fn`` or a pool initializer); Linux only.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def background_helper() -> None:
    """Initializer of a helper process (a pool's worker): it dies with its parent and
    yields the CPU to it, whose event loop carries the stream's latency."""
    die_with_parent()
    os.nice(10)
