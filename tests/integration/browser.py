"""Debian's chromium under Playwright, for the browser tests (the worker page and
the console); their fixtures (``browser``, ``output``) are in conftest.py."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from playwright.sync_api import ViewportSize

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Flags for a root, offline, headless run: background networking would reach for
#: Google's hosts and be refused by a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MOBILE = ViewportSize(width=390, height=844)


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to its end from this thread, where Playwright's loop runs."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
