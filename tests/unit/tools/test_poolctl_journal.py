"""The journal chain as poolctl and poold verify it, against tests/vectors/journal.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pooltools.kernel import journal as jr
from pooltools.kernel import uapi

VECTOR = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "journal.json").read_text())


def test_entry_hash_matches_the_vector() -> None:
    v = VECTOR
    h = jr.entry_hash(
        bytes.fromhex(v["prev_hash"]),
        v["seq"],
        v["timestamp_ns"],
        v["type"],
        v["code"],
        v["config_version"],
        bytes.fromhex(v["peer_public_key"]),
        bytes.fromhex(v["detail_hex"]),
    )
    assert h.hex() == v["hash"]
    e = jr.Entry.from_record({k: v[k] for k in v if k != "comment"})
    assert e.computed_hash().hex() == v["hash"]


def test_detail_is_hashed_up_to_its_nul() -> None:
    e = jr.Entry.from_record({k: VECTOR[k] for k in VECTOR if k != "comment"})
    padded = dataclasses.replace(e, detail=e.detail + b"\0garbage")
    assert padded.computed_hash() == e.hash


def test_from_struct_round_trip() -> None:
    s = uapi.PoolJournalEntry(seq=VECTOR["seq"], timestamp_ns=VECTOR["timestamp_ns"], type=1, config_version=3)
    s.detail = bytes.fromhex(VECTOR["detail_hex"])
    for name in ("prev_hash", "peer_public_key", "hash"):
        getattr(s, name)[:] = bytes.fromhex(VECTOR[name])
    e = jr.Entry.from_struct(s)
    assert e.computed_hash() == e.hash
    assert jr.Entry.from_record(e.to_record()) == e


def _chain(n: int, start_prev: bytes = jr.ZERO_HASH, start_seq: int = 0) -> list[jr.Entry]:
    out, prev = [], start_prev
    for i in range(n):
        seq = start_seq + i
        t = uapi.JournalType.GENESIS if i == 0 else uapi.JournalType.PEER
        h = jr.entry_hash(prev, seq, 1000 + i, t, 0, 0, jr.ZERO_KEY, b"e%d" % i)
        out.append(jr.Entry(seq, 1000 + i, t, 0, 0, jr.ZERO_KEY, prev, h, b"e%d" % i))
        prev = h
    return out


def test_verify_reports_each_kind_of_break() -> None:
    c = _chain(5)
    assert jr.verify(c).ok
    assert jr.verify(c[2:]).ok  # a ring that dropped its oldest entries still verifies
    missing = c[:2] + c[3:]
    assert jr.verify(missing).problems == [
        "seq 3: follows seq 1 (entries missing or reordered)",
        "seq 3: prev_hash does not match the hash of seq 1",
    ]
    forged = [*c[:1], dataclasses.replace(c[1], timestamp_ns=1), *c[2:]]
    assert jr.verify(forged).problems == ["seq 1: hash does not match the entry's contents"]
    bad_genesis = _chain(2, start_prev=b"\1" * 32)
    assert "genesis entry with a non-zero prev_hash" in jr.verify(bad_genesis).problems[0]


def test_restart_segments_only_when_allowed() -> None:
    two = _chain(3) + _chain(2)
    assert not jr.verify(two).ok
    res = jr.verify(two, allow_restart=True)
    assert res.ok and res.segments == 2 and res.last_seq == 1


def test_seeded_chain_continues() -> None:
    first = _chain(3)
    cont = _chain(2, start_prev=first[-1].hash, start_seq=3)
    res = jr.verify(first + cont)
    assert res.ok and res.segments == 1 and res.head_hash == cont[-1].hash


def test_persisted_journal_rotates_and_stays_one_chain(tmp_path: Path) -> None:
    """Appends past max_bytes rotate journal.jsonl into .1, .2 ... (at most `keep`), the disk
    use stays bounded, each file verifies from its first entry, the files oldest first verify
    as one chain, and a reload finds the head even right after a rotation."""
    path = tmp_path / "journal.jsonl"
    jf = jr.JournalFile(path, max_bytes=8192, keep=3)
    chain = _chain(400)
    for i in range(0, len(chain), 7):
        jf.append(chain[i : i + 7])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["journal.jsonl", "journal.jsonl.1", "journal.jsonl.2", "journal.jsonl.3"], files
    assert all(p.stat().st_size <= 8192 for p in tmp_path.iterdir())
    kept = []
    for name in ("journal.jsonl.3", "journal.jsonl.2", "journal.jsonl.1", "journal.jsonl"):
        entries, _ = jr.read_file(tmp_path / name)
        assert jr.verify(entries).ok, name
        kept += entries
    whole = jr.verify(kept)
    assert whole.ok and whole.last_seq == 399 and whole.first_seq > 0, whole
    assert jr.JournalFile(path).load()[-1] == chain[-1]
    # right after a rotation the current file is born with the batch that caused it: never empty
    jf2 = jr.JournalFile(path, max_bytes=8192, keep=3)
    jf2.load()
    assert jf2.head == chain[-1]


def test_persisted_journal_head_from_the_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    chain = _chain(3)
    jr.JournalFile(path).append(chain)
    path.rename(tmp_path / "journal.jsonl.1")
    jf = jr.JournalFile(path)
    assert jf.load() == [] and jf.head == chain[-1]


def test_persisted_journal_refuses_silly_limits(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(ValueError, match="max_bytes"):
        jr.JournalFile(tmp_path / "j", max_bytes=10)
