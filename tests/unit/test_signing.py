"""Signed model messages: what a classifier applies and what it refuses."""

from __future__ import annotations

import orjson
import pytest

from channels.records import LinearModel, ModelMetrics, ModelUpdate, SparseRow
from channels.signing import DEVELOPMENT_KEY, ModelRefused, ModelSigner
from config import load_settings
from pipelines.app import model_signer

KEY = b"k" * 32


def _update(version: int = 3) -> ModelUpdate:
    return ModelUpdate(
        classifier="aid_related",
        version=version,
        family="sklearn",
        created=1.5,
        n_train=120,
        n_holdout=30,
        metrics=ModelMetrics(auc=0.8, accuracy=0.75, per_tag={}),
        model=LinearModel(
            classes=["no", "yes"],
            link="sigmoid",
            n_features=16,
            intercept=[-0.25],
            rows=[SparseRow(idx=[1, 7], val=[0.5, -1.125])],
        ),
    )


def test_a_signed_update_round_trips() -> None:
    signer = ModelSigner(KEY)
    wire = signer.sign(_update())
    assert orjson.loads(wire)["signature"].startswith("hmac-sha256:")
    assert signer.verify(wire).model_copy(update={"signature": None}) == _update()


def test_a_verified_update_s_header_keeps_everything_but_the_weights() -> None:
    update = ModelSigner(KEY).verify(ModelSigner(KEY).sign(_update()))
    header = update.header()
    assert header.model_dump() == update.model_dump(exclude={"model", "signature"})
    assert not hasattr(header, "model")


def test_the_signature_does_not_depend_on_json_layout() -> None:
    body = orjson.loads(ModelSigner(KEY).sign(_update()))
    reordered = dict(reversed(list(body.items())))
    spaced = orjson.dumps(reordered, option=orjson.OPT_INDENT_2)
    assert ModelSigner(KEY).verify(spaced).version == 3


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), 999),
        (("classifier",), "request"),
        (("model", "intercept"), [5.0]),
        (("model", "rows"), [{"idx": [1, 7], "val": [0.5, 9.0]}]),
        (("metrics", "auc"), 0.99),
    ],
)
def test_any_change_after_signing_is_refused_as_tampered(
    path: tuple[str, ...], value: object
) -> None:
    body = orjson.loads(ModelSigner(KEY).sign(_update()))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ModelRefused) as refused:
        ModelSigner(KEY).verify(orjson.dumps(body))
    assert refused.value.kind == "tampered"


def test_another_key_unsigned_and_unknown_versions_are_refused() -> None:
    wire = ModelSigner(b"another key, 16+ bytes").sign(_update())
    with pytest.raises(ModelRefused) as other:
        ModelSigner(KEY).verify(wire)
    assert other.value.kind == "tampered"

    body = orjson.loads(ModelSigner(KEY).sign(_update()))
    del body["signature"]
    with pytest.raises(ModelRefused) as unsigned:
        ModelSigner(KEY).verify(orjson.dumps(body))
    assert unsigned.value.kind == "unsigned"

    future = ModelSigner(KEY).sign(_update().model_copy(update={"schema_version": 99}))
    with pytest.raises(ModelRefused) as version:
        ModelSigner(KEY).verify(future)
    assert version.value.kind == "schema_version"
    assert "99" in str(version.value)


@pytest.mark.parametrize("wire", [b"", b"\xff\xfe", b"[1, 2]", b'"model"', b"{"])
def test_non_models_are_refused_as_invalid(wire: bytes) -> None:
    with pytest.raises(ModelRefused) as refused:
        ModelSigner(KEY).verify(wire)
    assert refused.value.kind in {"invalid", "schema_version"}


def test_a_signed_record_that_is_not_a_model_is_refused() -> None:
    signer = ModelSigner(KEY)
    body = {"schema_version": 2, "classifier": "x", "model": "__import__('os')"}
    mac = orjson.loads(signer.sign(_update()))["signature"]  # a real signature, wrong body
    with pytest.raises(ModelRefused) as refused:
        signer.verify(orjson.dumps({**body, "signature": mac}))
    assert refused.value.kind == "tampered"
    # Signed by the key holder yet malformed: still only data, refused by the schema.
    signed = signer._mac(body)  # noqa: SLF001 (sign an arbitrary object)
    with pytest.raises(ModelRefused) as invalid:
        signer.verify(orjson.dumps({**body, "signature": signed}))
    assert invalid.value.kind == "invalid"


def test_a_key_is_required_on_kafka_and_defaults_only_on_the_embedded_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CROWDSTREAM_MODEL_KEY", raising=False)
    with pytest.raises(ValueError, match="CROWDSTREAM_MODEL_KEY"):
        model_signer(load_settings(), embedded=False)
    development = ModelSigner(DEVELOPMENT_KEY).sign(_update())
    assert model_signer(load_settings(), embedded=True).verify(development).version == 3
    monkeypatch.setenv("CROWDSTREAM_MODEL_KEY", KEY.decode())
    signer = model_signer(load_settings(), embedded=False)
    assert signer.verify(ModelSigner(KEY).sign(_update())).version == 3
    with pytest.raises(ModelRefused):
        signer.verify(development)
    with pytest.raises(ValueError, match="16"):
        ModelSigner(b"short")
