"""Helper processes never hold up their worker's exit; a worker that does not stop
leaves the stacks of what held it in its log."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pe.common.lifecycle import Helper, helper_pool
from pipelines.local import terminate

_BUSY_HELPER = textwrap.dedent(
    """
    import time
    from pe.common.lifecycle import helper_pool, stop_helpers

    if __name__ == "__main__":
        pool = helper_pool("busy")
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


def _thread_pools() -> list[tuple[str, int]]:
    import sklearn.linear_model  # noqa: F401 (loads its OpenMP runtime, as a refit does)
    from threadpoolctl import threadpool_info

    return [(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()]


def test_a_helper_uses_one_thread_of_each_math_library() -> None:
    # Threads waiting on the worker's core slowed the learner's encoder three-fold.
    with helper_pool("threads") as pool:
        pools = pool.submit(_thread_pools).result(timeout=60)
    assert {api for api, _ in pools} >= {"openblas", "openmp"}
    assert all(threads == 1 for _, threads in pools), pools


def test_a_helper_yields_the_cpu_as_much_as_it_is_told() -> None:
    mine = os.nice(0)
    default, lowest = Helper("default"), Helper("lowest", nice=19)
    try:
        assert default.executor.submit(os.nice, 0).result(timeout=60) == min(mine + 10, 19)
        assert lowest.executor.submit(os.nice, 0).result(timeout=60) == 19
        # A dead process is replaced by one as low.
        dead = lowest.executor
        lowest.renew(dead, RuntimeError("killed"))
        assert lowest.executor is not dead and lowest.generation == 1
        assert lowest.executor.submit(os.nice, 0).result(timeout=60) == 19
        lowest.renew(dead, RuntimeError("reported late"))  # not the current one: kept
        assert lowest.generation == 1
    finally:
        for helper in (default, lowest):
            helper.executor.shutdown(cancel_futures=True)


def _name() -> str:
    with open("/proc/self/comm") as comm:
        return comm.read().strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process names: Linux")
def test_a_helper_is_named_for_what_it_does() -> None:
    # Every helper's command line is the same spawn_main: its name tells them apart.
    fitter = Helper("model-fitting")
    long = Helper("a-name-longer-than-fifteen")
    try:
        assert fitter.executor.submit(_name).result(timeout=60) == "model-fitting"
        assert long.executor.submit(_name).result(timeout=60) == "a-name-longer-t"
    finally:
        for helper in (fitter, long):
            helper.executor.shutdown(cancel_futures=True)


_STUCK = textwrap.dedent(
    """
    import faulthandler, signal, sys, time

    def held_at_exit():
        time.sleep(600)

    faulthandler.enable()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("up", flush=True)
    held_at_exit()
    """
)


def test_a_worker_that_ignores_sigterm_is_aborted_with_its_stacks_on_record() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    terminate(proc, grace_s=1.0)
    assert proc.returncode == -6  # SIGABRT, not the SIGKILL that leaves nothing
    assert proc.stderr is not None
    assert "in held_at_exit" in proc.stderr.read().decode()


_COMMAND = textwrap.dedent(
    """
    import faulthandler
    from pipelines.cli import main

    main(["up", "no-such-topology.yaml"])
    print(faulthandler.is_enabled())
    """
)


def test_every_crowdstream_command_writes_its_stacks_when_aborted() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND], capture_output=True, env=env, timeout=60, check=False
    )
    assert done.stdout.decode().split() == ["True"], done.stderr.decode()
