"""Helper processes: they never hold up their worker's exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_BUSY_HELPER = textwrap.dedent(
    """
    import time
    from pe.common.lifecycle import helper_pool, stop_helpers

    if __name__ == "__main__":
        pool = helper_pool()
        pool.submit(int).result()  # the helper is up
        pool.submit(time.sleep, 600)  # a long refit, say
        time.sleep(0.5)
        stop_helpers()
    """
)


def test_a_worker_exits_at_once_while_its_helper_is_busy() -> None:
    # Without stop_helpers the interpreter waits at exit for the 600 s of work, and
    # the run times out.
    done = subprocess.run(
        [sys.executable, "-c", _BUSY_HELPER], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
