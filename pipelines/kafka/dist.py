"""The Apache Kafka release the embedded broker runs: found, checked and fetched.

``pom.xml`` beside this file pins the release. On first use its jars are resolved
from Maven Central with Maven into a cache folder (one folder per version, reused
after); a fetch that breaks leaves nothing behind that looks complete.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pe.common.staged import staged_folder

__all__ = [
    "POM",
    "BrokerError",
    "KafkaDist",
    "default_cache_dir",
    "find_java",
    "kafka_version",
]

POM = Path(__file__).with_name("pom.xml")
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
#: Kafka 4's broker needs Java 17 or later.
MIN_JAVA = 17
_MAVEN_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
#: Written last into a fetched folder: without it the folder is a broken fetch.
_COMPLETE = ".complete"
_FETCH_TIMEOUT_S = 900


class BrokerError(RuntimeError):
    """The embedded broker cannot be fetched, started or kept running; the message
    says why and what to do."""


@cache
def kafka_version() -> str:
    """The pinned Kafka version (``kafka.version`` in pom.xml)."""
    found = ET.parse(POM).find("m:properties/m:kafka.version", _MAVEN_NS)  # noqa: S314 (our own file)
    if found is None or not found.text:
        raise BrokerError(f"{POM} declares no kafka.version")
    return found.text.strip()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/crowdstream`` (``~/.cache/crowdstream``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crowdstream"


def find_java() -> str:
    """The ``java`` to run the broker with (``$JAVA_HOME/bin/java`` first), checked to
    be Java 17 or later."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).is_file():
        raise BrokerError(
            "no Java found: the embedded broker is Apache Kafka and needs Java "
            f"{MIN_JAVA} or later. Install it (Debian: apt-get install "
            "openjdk-17-jre-headless; `make demo` and `make test` do this) or set JAVA_HOME"
        )
    version = _java_major(java)
    if version < MIN_JAVA:
        raise BrokerError(
            f"{java} is Java {version}; Apache Kafka {kafka_version()} needs Java "
            f"{MIN_JAVA} or later (set JAVA_HOME to a newer one)"
        )
    return java


def _java_major(java: str) -> int:
    out = subprocess.run(  # noqa: S603 (a java binary found above, fixed argument)
        [java, "-version"], capture_output=True, text=True, timeout=60, check=False
    )
    # `openjdk version "17.0.15"`, or "1.8.0_412" for Java 8.
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not found:
        raise BrokerError(f"cannot tell the version of {java}: {out.stderr.strip()[:200]}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


@dataclass(frozen=True)
class KafkaDist:
    """The jars of the pinned Kafka release under ``cache_dir``."""

    cache_dir: Path

    @property
    def version(self) -> str:
        return kafka_version()

    @property
    def libs(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}" / "libs"

    @property
    def ready(self) -> bool:
        return (self.libs / _COMPLETE).is_file()

    def classpath(self) -> str:
        """The Java class path of the broker, fetching the jars first if needed."""
        self.fetch()
        return str(self.libs / "*")

    def fetch(self) -> Path:
        """Resolve the jars with Maven unless they are here already; their folder."""
        if self.ready:
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                f"Apache Kafka {self.version} is not in {self.libs.parent} yet and Maven "
                "(mvn), which fetches it, is not installed. Install it (Debian: apt-get "
                "install maven; `make demo` and `make test` do this) and run again"
            )
        # Resolve into a temporary folder beside the final one, then rename: a fetch
        # that breaks half-way never looks complete.
        with staged_folder(self.libs, _COMPLETE, self.version + "\n") as staging:
            try:
                result = subprocess.run(  # noqa: S603 (mvn from PATH, fixed arguments)
                    [
                        mvn,
                        "--batch-mode",
                        "--quiet",
                        "--file",
                        str(POM),
                        "dependency:copy-dependencies",
                        "-DincludeScope=runtime",
                        f"-DoutputDirectory={staging}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=_FETCH_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(
                    f"fetching Apache Kafka {self.version} with Maven took over "
                    f"{_FETCH_TIMEOUT_S} s; check the network and run again"
                ) from exc
            if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
                raise BrokerError(
                    f"fetching Apache Kafka {self.version} with Maven failed (exit "
                    f"{result.returncode}); nothing was started. Check that Maven reaches "
                    "Maven Central (or the mirror in ~/.m2/settings.xml) and run again. "
                    f"Maven said:\n{tail}"
                )
        return self.libs
