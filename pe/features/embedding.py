"""Sentence embeddings from a small model that ships inside a Python package.

``wordllama`` (the ``embeddings`` extra) bundles a 256-dimension static token
embedding (l2_supercat) with its tokenizer: an embedding is the mean of the
text's token vectors, normalised, computed in microseconds without a GPU. The model
is loaded from the installed package; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib.resources import files

import numpy as np
import numpy.typing as npt

__all__ = ["Embedder", "load_embedder"]

Embedder = Callable[[Sequence[str]], npt.NDArray[np.float32]]


@lru_cache(maxsize=2)
def load_embedder(name: str) -> Embedder:
    """The embedding function ``name`` names; a clear error if it is not installed."""
    if name != "wordllama":
        raise ValueError(f"unknown embedding {name!r}")
    try:
        from safetensors import safe_open
        from wordllama import WordLlama
        from wordllama.inference import WordLlamaInference
    except ImportError as exc:
        raise RuntimeError(
            "features.embedding 'wordllama' needs the embeddings extra: "
            "pip install 'crowdstream[embeddings]'"
        ) from exc
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
