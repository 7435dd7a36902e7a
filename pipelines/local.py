"""A worker process on this machine, for the demo and the benchmarks: started with
``crowdstream up``, awaited until ready, read and steered over its HTTP API, stopped
with SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["LocalWorker", "cpu_seconds", "rss_mib", "terminate"]

#: Longest wait for a worker to join its consumer group.
READY_TIMEOUT_S = 90.0


@dataclass
class LocalWorker:
    """``crowdstream up <topology>`` on ``broker``, its output in ``log``."""

    proc: subprocess.Popen[bytes]
    http_port: int
    log: Path

    @classmethod
    def start(
        cls,
        topology: str,
        broker: str,
        http_port: int,
        log: Path,
        *,
        crowd: str,
        data_dir: Path,
        overrides: tuple[str, ...] = (),
        pes: tuple[str, ...] = (),
        model_key: str | None = None,
    ) -> LocalWorker:
        """Start it, its state in ``data_dir`` (``overrides``: ``--set`` values;
        ``pes``: only these PEs, default all).

        It signs and checks models with ``model_key`` (the workers of one pipeline
        share one), by default a key of its own run: it does not own the broker,
        whose development key anyone who reaches it knows."""
        cmd = [sys.executable, "-m", "pipelines.cli", "up", topology, "--broker", broker]
        cmd += ["--http-port", str(http_port), "--crowd", crowd]
        for override in overrides:
            cmd += ["--set", override]
        if pes:
            cmd += ["--pe", *pes]
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 (our own CLI)
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={
                    **os.environ,
                    "CROWDSTREAM_DATA_DIR": str(data_dir),
                    "CROWDSTREAM_MODEL_KEY": model_key or secrets.token_hex(16),
                },
            )
        return cls(proc, http_port, log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until ``/healthz`` answers 200; RuntimeError if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"the worker exited with code {self.proc.returncode}; see {self.log.name}"
                raise RuntimeError(msg)
            with (
                contextlib.suppress(OSError),  # not listening yet, or 503 while joining
                urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer,  # noqa: S310
            ):
                if answer.status == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the worker was not ready within {timeout_s:.0f} s")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as answer:  # noqa: S310
            return str(answer.read().decode())

    def gauge(self, name: str, label: str) -> dict[str, float]:
        """The worker's gauge ``name``, by the value of its label ``label``."""
        return {
            sample.labels[label]: sample.value
            for family in text_string_to_metric_families(self.metrics())
            for sample in family.samples
            if sample.name == name
        }

    def teacher_embedded(self) -> float:
        """Items of the learner's sample of the stream embedded for its teacher."""
        return self.gauge("crowdstream_learner_teacher_sample", "state").get("embedded", 0.0)

    def second_opinions_waiting(self) -> float:
        """Items the classifier's second pass has queued or is deciding again."""
        return sum(self.gauge("crowdstream_second_opinion_waiting", "pipeline").values())

    def trained_on_all(self, classifiers: Iterable[str]) -> bool:
        """Has the learner finished a training on every label it holds, for each of
        ``classifiers``?"""
        held = self.gauge("crowdstream_learner_labels", "classifier")
        trained = self.gauge("crowdstream_learner_trained_labels", "classifier")
        return all(0 < held.get(name, 0) <= trained.get(name, 0) for name in classifiers)

    def set_classifiers(self, classifiers: Iterable[str], action: str) -> None:
        """Pause or resume (``action``) each of ``classifiers`` through the classifiers
        API (an operator call; open on loopback), and wait until the worker has read
        the change back."""
        state = {"pause": "paused", "resume": "active"}[action]
        for name in classifiers:
            url = f"{self.url}/api/v1/classifiers/{name}"
            request = urllib.request.Request(f"{url}/{action}", data=b"", method="POST")  # noqa: S310
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310 (our own worker)
                pass
            deadline = time.monotonic() + 30
            while True:
                with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310
                    if json.load(answer)["state"] == state:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"classifier {name} not {state} after 30 s")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            terminate(self.proc)


def terminate(proc: subprocess.Popen[bytes], grace_s: float = 60.0) -> None:
    """SIGTERM (a worker finishes and commits its batches), then SIGABRT if it has not
    exited within ``grace_s`` (60 s: its data plane may take 20 s for the batches in
    hand, and an embedded broker 30 s more for its controlled shutdown). A worker
    stuck past that writes the stack of each of its threads to its log as it aborts
    (``crowdstream`` enables faulthandler), so the log says what held it; SIGKILL is
    the last resort."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (0 if it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used so far (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which may hold spaces: utime and stime are the
    # 14th and 15th of the line.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
