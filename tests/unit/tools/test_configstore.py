"""Configuration documents and the version store (pooltools.config.store, docs/protocol.md section 7)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pooltools.config import store as cs
from pooltools.protocol import x25519
from pooltools.protocol.keys import decode_key, encode_key

K1 = encode_key(x25519.public_key(bytes(range(1, 33))))
K2 = encode_key(x25519.public_key(bytes(range(2, 34))))
# a low-order point (order 8) that decodes fine as base64 but pool.ko refuses
LOW_ORDER = encode_key(bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"))


def doc(**kw: object) -> dict:
    d: dict = {"heartbeat_seconds": 5, "peers": [{"name": "node2", "public_key": K1, "endpoint": "10.0.0.2:9253"}]}
    d.update(kw)
    return d


@pytest.mark.parametrize(
    ("key", "value", "lo", "hi"),
    [
        ("heartbeat_seconds", 0, 1, 3600),
        ("heartbeat_seconds", 3601, 1, 3600),
        ("rekey_seconds", 4, 5, 2**31),
        ("rekey_seconds", 2**31 + 1, 5, 2**31),
        ("rekey_packets", 0, 1, 2**32 - 1),
        ("rekey_packets", 2**32, 1, 2**32 - 1),
        ("puzzle_difficulty", 21, 0, 20),
        ("max_sessions", 0, 1, 65536),
        ("max_sessions", 65537, 1, 65536),
    ],
)
def test_out_of_range_names_the_key_and_range(key: str, value: int, lo: int, hi: int) -> None:
    with pytest.raises(cs.ConfigInvalid) as exc:
        cs.validate(doc(**{key: value}))
    assert exc.value.key == key
    assert str(exc.value) == f"{key}: {value} is out of range ({lo}-{hi})"


@pytest.mark.parametrize(
    ("key", "value"),
    [("heartbeat_seconds", 1), ("heartbeat_seconds", 3600), ("rekey_seconds", 5), ("rekey_seconds", 2**31),
     ("rekey_packets", 2**32 - 1), ("puzzle_difficulty", 0), ("puzzle_difficulty", 20), ("max_sessions", 65536)],
)  # fmt: skip
def test_kernel_limits_are_accepted(key: str, value: int) -> None:
    assert cs.validate(doc(**{key: value}))[key] == value


def test_kernel_ranges_match_kmod_main_c() -> None:
    src = (Path(__file__).resolve().parents[3] / "kmod" / "main.c").read_text()
    assert "p->heartbeat_seconds >= 1 && p->heartbeat_seconds <= 3600" in src
    assert "p->rekey_seconds >= 5 && p->rekey_seconds <= (1U << 31)" in src
    assert "p->rekey_packets >= 1 && p->rekey_packets < (1ULL << 32)" in src
    assert "p->max_sessions >= 1 && p->max_sessions <= 65536" in src
    hs = (Path(__file__).resolve().parents[3] / "kmod" / "handshake.h").read_text()
    assert "#define POOL_MAX_DIFFICULTY\t20" in hs


@pytest.mark.parametrize(
    ("bad", "key", "fragment"),
    [
        ({"heartbeat_seconds": "5"}, "heartbeat_seconds", "must be an integer"),
        ({"heartbeat_seconds": True}, "heartbeat_seconds", "must be an integer"),
        ({"hearbeat_seconds": 5}, "hearbeat_seconds", "did you mean 'heartbeat_seconds'"),
        ({"peers": {}}, "peers", "must be a list"),
        ({"peers": [{"name": "n", "public_key": "AAAA"}]}, "peers[0] (n).public_key", "44 base64"),
        ({"peers": [{"name": "n", "public_key": encode_key(bytes(32))}]}, "peers[0] (n).public_key", "all zero"),
        ({"peers": [{"name": "n", "public_key": LOW_ORDER}]}, "peers[0] (n).public_key", "low-order"),
        ({"peers": [{"name": "-bad", "public_key": K1}]}, "peers[0].name", "1-31 characters"),
        ({"peers": [{"name": "x" * 32, "public_key": K1}]}, "peers[0].name", "1-31 characters"),
        ({"peers": [{"name": "n", "public_key": K1, "endpoint": "10.0.0.1"}]}, "peers[0] (n).endpoint", "address:port"),
        ({"peers": [{"name": "n", "public_key": K1, "port": 1}]}, "peers[0].port", "unknown key"),
        (
            {"peers": [{"name": "a", "public_key": K1}, {"name": "b", "public_key": K1}]},
            "peers[1] (b).public_key",
            "duplicate key",
        ),
        (
            {"peers": [{"name": "a", "public_key": K1}, {"name": "a", "public_key": K2}]},
            "peers[1] (a).name",
            "duplicate name",
        ),
    ],
)
def test_errors_name_the_key(bad: dict, key: str, fragment: str) -> None:
    with pytest.raises(cs.ConfigInvalid) as exc:
        cs.validate(bad)
    assert exc.value.key == key
    assert str(exc.value).startswith(key + ": ")
    assert fragment in str(exc.value)


def test_own_key_refused() -> None:
    own = x25519.public_key(bytes(range(1, 33)))
    with pytest.raises(cs.ConfigInvalid, match="own public key"):
        cs.validate(doc(), own)


def test_bad_json_and_not_an_object() -> None:
    with pytest.raises(cs.ConfigInvalid, match="not valid JSON"):
        cs.parse("{", "f.json")
    with pytest.raises(cs.ConfigInvalid, match="JSON object"):
        cs.parse("[]")


def test_canonical_form_and_hash_are_stable() -> None:
    a = cs.validate(
        {
            "peers": [
                {"public_key": K2, "name": "z", "endpoint": None},
                {"name": "a", "public_key": K1, "endpoint": "10.0.0.2:9253"},
            ],
            "max_sessions": 256,
        }
    )
    b = cs.validate(
        {"peers": [{"name": "a", "public_key": K1, "endpoint": "10.0.0.2:9253"}, {"name": "z", "public_key": K2}]}
    )
    assert cs.canonical(a) == cs.canonical(b)
    text = cs.canonical(a).decode()
    assert " " not in text and "\n" not in text
    assert text.startswith('{"heartbeat_seconds":5,"max_sessions":256,"peers":[{"endpoint":"10.0.0.2:9253","name":"a"')
    assert cs.config_hash(a) == hashlib.sha256(cs.canonical(a)).digest()
    # a fixed known answer: the hash must never change for the same content
    empty = cs.validate({})
    assert cs.canonical(empty) == (
        b'{"heartbeat_seconds":5,"max_sessions":256,"peers":[],"puzzle_difficulty":16,'
        b'"rekey_packets":1073741824,"rekey_seconds":3600}'
    )
    assert cs.config_hash(empty).hex() == hashlib.sha256(cs.canonical(empty)).hexdigest()


def test_ipv6_endpoint_normalised() -> None:
    c = cs.validate({"peers": [{"name": "n", "public_key": K1, "endpoint": "[FD53:253:0::12]:9253"}]})
    assert c["peers"][0]["endpoint"] == "[fd53:253::12]:9253"


def test_diff_of_pretty_forms() -> None:
    a, b = cs.validate(doc()), cs.validate(doc(heartbeat_seconds=9))
    text = cs.unified_diff(a, b, "version 1", "version 2")
    assert text.startswith("--- version 1\n+++ version 2\n")
    assert '-  "heartbeat_seconds": 5,\n' in text and '+  "heartbeat_seconds": 9,\n' in text
    assert cs.unified_diff(a, a, "x", "y") == ""


def test_store_write_read_and_confirmed(tmp_path: Path) -> None:
    st = cs.Store(tmp_path)
    cfg = cs.validate(doc())
    rec = st.write(1, cfg, "apply")
    assert rec.path == tmp_path / "config" / "v0000000001.json"
    assert st.read(1).config == cfg and st.read(1).hash == cs.config_hash(cfg)
    assert st.confirmed() is None
    assert st.set_confirmed(1, rec.hash) is True
    assert st.set_confirmed(1, rec.hash) is False
    assert st.confirmed().version == 1
    with pytest.raises(cs.StoreError, match="already stored"):
        st.write(1, cfg, "apply")
    with pytest.raises(cs.StoreError, match="hash differs"):
        st.set_confirmed(1, bytes(32))
    assert not list((tmp_path / "config").glob(".*.tmp"))


def test_store_keeps_the_last_50_and_the_confirmed(tmp_path: Path) -> None:
    st = cs.Store(tmp_path)
    first = st.write(1, cs.validate(doc(heartbeat_seconds=1)), "apply")
    st.set_confirmed(1, first.hash)
    for v in range(2, 61):
        st.write(v, cs.validate(doc(heartbeat_seconds=v)), "apply")
    vs = st.versions()
    assert vs == [1, *range(11, 61)]  # 50 newest + the confirmed one
    assert len([v for v in vs if v != 1]) == cs.KEEP_VERSIONS
    st.set_confirmed(60, st.read(60).hash)
    st.write(61, cs.validate(doc(heartbeat_seconds=61)), "apply")
    assert st.versions() == [1, *range(12, 62)]  # 1 stays: the confirmed one before 60 (a fallback)
    for v in range(62, 66):  # four more confirms push version 1 out of the pointer's fallbacks
        st.write(v, cs.validate(doc(heartbeat_seconds=v)), "apply")
        st.set_confirmed(v, st.read(v).hash)
    assert [v for v, _h in st.confirmed_chain()] == [65, 64, 63, 62, 60]
    st.write(66, cs.validate(doc(heartbeat_seconds=66)), "apply")
    assert st.versions() == list(range(17, 67))  # exactly the newest 50


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda t: t.replace('"heartbeat_seconds": 5', '"heartbeat_seconds": 6'),  # content changed, hash kept
        lambda t: t[: len(t) // 2],  # truncated
        lambda t: t.replace('"version": 1', '"version": 2'),  # another version's record
        lambda t: "garbage",
    ],
)
def test_corrupted_file_is_an_error_naming_it(tmp_path: Path, corrupt) -> None:
    st = cs.Store(tmp_path)
    st.write(1, cs.validate(doc()), "apply")
    path = st.path(1)
    path.write_text(corrupt(path.read_text()))
    with pytest.raises(cs.StoreError) as exc:
        st.read(1)
    assert str(path) in str(exc.value) and "corrupted" in str(exc.value)
    assert st.find_hash(cs.config_hash(cs.validate(doc()))) is None  # never used


def test_corrupted_confirmed_version_is_not_restored(tmp_path: Path) -> None:
    st = cs.Store(tmp_path)
    rec = st.write(1, cs.validate(doc()), "apply")
    st.set_confirmed(1, rec.hash)
    raw = json.loads(rec.path.read_text())
    raw["config"]["max_sessions"] = 1
    rec.path.write_text(json.dumps(raw))
    with pytest.raises(cs.StoreError, match=r"v0000000001\.json: corrupted"):
        st.confirmed()


def test_missing_version(tmp_path: Path) -> None:
    with pytest.raises(cs.StoreError, match="version 7 is not stored"):
        cs.Store(tmp_path).read(7)


def test_corrupted_pointer_blocks_pruning_until_a_confirm_rewrites_it(tmp_path: Path) -> None:
    st = cs.Store(tmp_path, keep=2)
    recs = [st.write(v, cs.validate(doc(heartbeat_seconds=v)), "apply") for v in (1, 2)]
    (tmp_path / "config" / cs.CONFIRMED_FILE).write_text("{broken")
    with pytest.raises(cs.StoreError, match=r"confirmed\.json: corrupted"):
        st.confirmed()
    st.write(3, cs.validate(doc(heartbeat_seconds=3)), "apply")
    assert st.versions() == [1, 2, 3]  # nothing deleted while the pointer is unreadable
    assert st.set_confirmed(2, recs[1].hash) is True
    assert st.confirmed().version == 2
    st.write(4, cs.validate(doc(heartbeat_seconds=4)), "apply")
    assert st.versions() == [2, 3, 4]


# ---- durability: temporary file, fsync, rename, fsync of the folder (issue 6 point 2)


def _fsync_recorder(monkeypatch: pytest.MonkeyPatch, final: Path) -> list[tuple[str, bool]]:
    """Record every fsync as (what the fd names, whether `final` exists at that moment)."""
    import os

    calls: list[tuple[str, bool]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), final.exists()))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_write_is_temp_file_fsync_rename_fsync_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = cs.Store(tmp_path)
    st.write(1, cs.validate(doc()), "apply")  # the folder exists
    final = st.path(2)
    calls = _fsync_recorder(monkeypatch, final)
    st.write(2, cs.validate(doc(heartbeat_seconds=2)), "apply")
    folder = str(tmp_path / "config")
    # the data reaches the disk under a temporary name before the version's name exists ...
    assert calls[0][0].startswith(f"{folder}/.v0000000002.json.") and calls[0][0].endswith(".tmp")
    assert calls[0][1] is False
    # ... then the folder is synced with the new name in it
    assert (folder, True) in calls[1:]
    assert sorted(p.name for p in (tmp_path / "config").iterdir()) == ["v0000000001.json", "v0000000002.json"]


def test_confirmed_pointer_is_written_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = cs.Store(tmp_path)
    rec = st.write(1, cs.validate(doc()), "apply")
    final = tmp_path / "config" / cs.CONFIRMED_FILE
    calls = _fsync_recorder(monkeypatch, final)
    st.set_confirmed(1, rec.hash)
    assert ".confirmed.json." in calls[0][0] and calls[0][1] is False
    assert (str(tmp_path / "config"), True) in calls[1:]


def test_first_write_syncs_the_new_folder_in_its_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fsync_recorder(monkeypatch, tmp_path / "nothing")
    cs.Store(tmp_path).write(1, cs.validate(doc()), "apply")
    assert str(tmp_path) in [c[0] for c in calls]  # state_dir holds the new config/ entry durably


def test_failed_write_leaves_neither_the_version_nor_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    st = cs.Store(tmp_path)
    st.write(1, cs.validate(doc()), "apply")

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(cs.StoreError, match=r"v0000000002\.json: cannot write: Input/output error"):
        st.write(2, cs.validate(doc(heartbeat_seconds=2)), "apply")
    monkeypatch.undo()
    assert st.versions() == [1]
    assert sorted(p.name for p in (tmp_path / "config").iterdir()) == ["v0000000001.json"]


def test_prune_syncs_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = cs.Store(tmp_path, keep=2)
    for v in (1, 2):
        st.write(v, cs.validate(doc(heartbeat_seconds=v)), "apply")
    calls = _fsync_recorder(monkeypatch, st.path(1))
    st.write(3, cs.validate(doc(heartbeat_seconds=3)), "apply")
    assert st.versions() == [2, 3]
    assert (str(tmp_path / "config"), False) in calls  # after the unlink of version 1


def test_stored_hash_that_does_not_match_the_content_is_refused(tmp_path: Path) -> None:
    st = cs.Store(tmp_path)
    rec = st.write(1, cs.validate(doc()), "apply")
    raw = json.loads(rec.path.read_text())
    raw["hash"] = hashlib.sha256(b"something else").hexdigest()  # content intact, hash swapped
    rec.path.write_text(json.dumps(raw))
    with pytest.raises(cs.Corrupted, match=r"v0000000001\.json: corrupted \(content does not match its hash"):
        st.read(1)


def test_pointer_hash_checked_against_the_stored_version(tmp_path: Path) -> None:
    st = cs.Store(tmp_path)
    rec = st.write(1, cs.validate(doc()), "apply")
    st.set_confirmed(1, rec.hash)
    ptr = tmp_path / "config" / cs.CONFIRMED_FILE
    raw = json.loads(ptr.read_text())
    raw["hash"] = "ab" * 32
    ptr.write_text(json.dumps(raw))
    with pytest.raises(
        cs.Corrupted, match=r"differs from the abababababababab\.\.\. confirmed\.json recorded for version 1"
    ):
        st.confirmed()


def test_confirmed_chain_keeps_earlier_confirmed_versions(tmp_path: Path) -> None:
    st = cs.Store(tmp_path)
    recs = {v: st.write(v, cs.validate(doc(heartbeat_seconds=v)), "apply") for v in range(1, 8)}
    for v in range(1, 8):
        st.set_confirmed(v, recs[v].hash)
    st.set_confirmed(0, bytes(32))  # rolled back past the first version
    assert [v for v, _h in st.confirmed_chain()] == [0, 7, 6, 5, 4]
    assert st.confirmed() is None
    st.set_confirmed(6, recs[6].hash)  # no duplicates in the chain
    assert [v for v, _h in st.confirmed_chain()] == [6, 0, 7, 5, 4]
    with pytest.raises(cs.StoreError, match="version 0 has no hash"):
        st.set_confirmed(0, b"\x01" * 32)


def test_not_stored_and_corrupted_are_told_apart(tmp_path: Path) -> None:
    st = cs.Store(tmp_path)
    with pytest.raises(cs.NotStored):
        st.read(3)
    st.write(3, cs.validate(doc()), "apply")
    st.path(3).write_text("{}")
    with pytest.raises(cs.Corrupted):
        st.read(3)


def _relayed(relays: object) -> dict:
    return doc(
        peers=[
            {"name": "node2", "public_key": K1, "endpoint": "10.0.0.2:9253"},
            {"name": "node3", "public_key": K2, "endpoint": None, "relays": relays},
        ]
    )


def test_a_peer_names_its_relays_and_the_hash_of_a_document_without_them_is_unchanged() -> None:
    d = cs.validate(_relayed(["node2"]))
    assert d["peers"][1]["relays"] == ["node2"]
    assert cs.relay_routes(d) == {decode_key(K2): (("node2", decode_key(K1)),)}
    plain = cs.validate(doc())
    assert "relays" not in plain["peers"][0]
    with_empty = doc()
    with_empty["peers"][0]["relays"] = []
    assert cs.config_hash(cs.validate(with_empty)) == cs.config_hash(plain)  # versions made before keep their hash
    assert cs.config_hash(d) != cs.config_hash(cs.validate(_relayed([])))  # the relays are part of the version


@pytest.mark.parametrize(
    ("relays", "fragment"),
    [
        ("node2", "must be a list of the names of other peers"),
        ([2], "must be a list of the names of other peers"),
        (["node2", "node2"], "names a relay twice"),
        (["node3"], "a peer cannot be its own relay"),
        (["node9"], "'node9' is not a peer of this configuration"),
    ],
)
def test_bad_relays_name_the_peer(relays: object, fragment: str) -> None:
    with pytest.raises(cs.ConfigInvalid) as e:
        cs.validate(_relayed(relays))
    assert e.value.key == "peers[1] (node3).relays" and fragment in str(e.value)
