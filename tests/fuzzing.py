"""Hypothesis strategies for bad input: random bytes, any JSON in any field, huge
strings, deep JSON, invalid UTF-8 and emoji (the decoder and pipeline fuzz tests)."""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

from channels.records import MAX_TEXT_CHARS

__all__ = ["FIELDS", "JSON", "payloads"]

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8")),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON,
        "text": JSON | st.text(min_size=1, max_size=MAX_TEXT_CHARS + 50),
        "ts": JSON,
        "meta": JSON,
        "source": JSON,
    },
)


def payloads() -> st.SearchStrategy[bytes]:
    deep = st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n)
    return st.one_of(
        st.binary(max_size=2000),
        JSON.map(orjson.dumps),
        FIELDS.map(orjson.dumps),
        deep,
        st.text(alphabet=st.characters(codec="utf-8"), max_size=300).map(
            lambda t: orjson.dumps({"text": t + "\U0001f30a\u200d"})
        ),
        st.binary(min_size=1, max_size=50).map(lambda b: b'{"text": "' + b"\xff" + b + b'"}'),
    )
