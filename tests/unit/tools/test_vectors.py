"""tests/vectors reproduce from scripts/gen-vectors.py, and kmod/vectors.h is up to date."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("cryptography")

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "tests" / "vectors"


def _load(name: str) -> ModuleType:
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_vectors_reproduce() -> None:
    gen = _load("gen-vectors")
    built = gen.build()
    assert sorted(built) == sorted(p.stem for p in VECTORS.glob("*.json"))
    for name, doc in built.items():
        on_disk = (VECTORS / f"{name}.json").read_text()
        assert gen.render(doc) == on_disk, f"tests/vectors/{name}.json is stale: run scripts/gen-vectors.py"


def test_contract_keys_present() -> None:
    hs = json.loads((VECTORS / "handshake.json").read_text())
    for key in [
        "initiator_static_secret",
        "initiator_static_public",
        "responder_static_secret",
        "responder_static_public",
        "initiator_ephemeral_secret",
        "initiator_ephemeral_public",
        "responder_ephemeral_secret",
        "responder_ephemeral_public",
        "iid",
        "rid",
        "timestamp",
        "cookie_secret",
        "client_ip",
        "client_port",
        "difficulty",
        "solution",
        "init_packet",
        "challenge_packet",
        "response_packet",
        "ack_packet",
        "transport_okm",
        "data_plaintext",
        "data_seq",
        "data_timestamp",
        "data_channel",
        "data_packet",
    ]:
        assert key in hs, key
    assert len(bytes.fromhex(hs["transport_okm"])) == 176
    assert len(bytes.fromhex(hs["iid"])) == len(bytes.fromhex(hs["rid"])) == 8
    assert len(bytes.fromhex(hs["client_ip"])) == 16
    assert set(json.loads((VECTORS / "rekey.json").read_text())) >= {"rk", "dh", "okm"}
    assert set(json.loads((VECTORS / "journal.json").read_text())) >= {
        "prev_hash",
        "seq",
        "timestamp_ns",
        "type",
        "code",
        "config_version",
        "peer_public_key",
        "detail_hex",
        "hash",
    }
    assert set(json.loads((VECTORS / "address.json").read_text())) >= {"public_key", "org_id", "segment_id", "address"}


def test_kmod_vectors_h_up_to_date(tmp_path: Path) -> None:
    gen = _load("gen-kmod-vectors")
    out = tmp_path / "vectors.h"
    assert gen.main(["--vectors", str(VECTORS), "--out", str(out)]) == 0
    assert out.read_text() == (REPO / "kmod" / "vectors.h").read_text(), (
        "kmod/vectors.h is stale: run scripts/gen-kmod-vectors.py"
    )


def test_kmod_vectors_h_naming_rule() -> None:
    text = (REPO / "kmod" / "vectors.h").read_text()
    assert "static const u8 pool_vec_handshake_init_packet[] __maybe_unused = {" in text
    assert "#define POOL_VEC_HANDSHAKE_TIMESTAMP 1764000000000000000ULL" in text
    assert "#define POOL_VEC_RFC_HKDF_SHA256_LENGTH 42ULL" in text
    assert "comment" not in text.lower().replace("/*", "")
    assert "SPDX-License-Identifier: GPL-2.0-only" in text.splitlines()[0]
