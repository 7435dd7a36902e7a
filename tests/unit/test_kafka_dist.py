"""Finding Java and fetching the pinned Kafka release: each failure says what to do."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pipelines.kafka.dist import POM, BrokerError, KafkaDist, find_java, kafka_version


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only a folder of this test's own commands."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return folder


def test_the_version_is_the_one_pinned_in_the_pom() -> None:
    assert kafka_version() in POM.read_text()
    assert kafka_version().split(".")[0] == "4"


def test_no_java_says_how_to_install_it(bare_path: Path) -> None:
    with pytest.raises(BrokerError, match="no Java found.*openjdk-17-jre-headless"):
        find_java()


def test_an_old_java_is_refused_with_the_version_needed(bare_path: Path) -> None:
    _script(bare_path, "java", "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    with pytest.raises(BrokerError, match="is Java 11.*needs Java 17"):
        find_java()


def test_java_8_is_read_as_8(bare_path: Path) -> None:
    _script(bare_path, "java", "echo 'java version \"1.8.0_412\"' >&2\n")
    with pytest.raises(BrokerError, match="is Java 8"):
        find_java()


def test_java_home_wins_over_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = _script(home / "bin", "java", "echo 'openjdk version \"21.0.1\"' >&2\n")
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert find_java() == str(java)


def test_no_maven_says_how_to_install_it(bare_path: Path, tmp_path: Path) -> None:
    dist = KafkaDist(tmp_path / "cache")
    with pytest.raises(BrokerError, match="Maven .* not installed.*apt-get install maven"):
        dist.fetch()


def test_a_broken_download_leaves_nothing_that_looks_fetched(
    bare_path: Path, tmp_path: Path
) -> None:
    # Maven that writes a jar, then fails as a download cut half-way would.
    _script(
        bare_path,
        "mvn",
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) d="${a#*=}";; esac; done\n'
        ': > "$d/kafka_2.13-x.jar"\n'
        'echo "[ERROR] Could not transfer artifact org.apache.kafka:kafka-server"\n'
        "exit 1\n",
    )
    dist = KafkaDist(tmp_path / "cache")
    with pytest.raises(BrokerError, match="(?s)failed.*run again.*Could not transfer"):
        dist.fetch()
    assert not dist.ready
    assert os.listdir(dist.libs.parent) == []  # no partial folder left behind


def test_a_complete_fetch_is_reused_without_maven(bare_path: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _script(
        bare_path,
        "mvn",
        f'echo run >> "{calls}"\n'
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) d="${a#*=}";; esac; done\n'
        ': > "$d/kafka_2.13-x.jar"\n',
    )
    dist = KafkaDist(tmp_path / "cache")
    libs = dist.fetch()
    assert dist.ready and (libs / "kafka_2.13-x.jar").is_file()
    assert dist.fetch() == libs
    assert calls.read_text().splitlines() == ["run"]
    assert dist.classpath() == f"{libs}/*"
