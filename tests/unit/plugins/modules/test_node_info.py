"""pool.ops.node_info against a fake poolctl and fake sysfs."""

from __future__ import annotations

import pytest
from ansible_collections.pool.ops.plugins.module_utils import poolctl as poolctl_utils
from ansible_collections.pool.ops.plugins.modules import node_info as info
from ansible_collections.pool.ops.tests.unit.plugins.fake_poolctl import FakePoolctl, run_module

PUB = "q" * 43 + "="
PEER = "r" * 43 + "="

FIXTURE = {
    "identity show": {
        "json": {
            "public_key": PUB,
            "address": "00010001:" + "00000000:" * 6 + "12345678",
            "org_id": 0,
            "segment_id": 0,
            "set": True,
        }
    },
    "peers list": {"json": {"peers": [{"name": "node2", "public_key": PEER, "endpoint": "10.253.0.12:9253"}]}},
    "sessions": {
        "json": {
            "sessions": [
                {
                    "index": 1,
                    "state": "ESTABLISHED",
                    "peer_public_key": PEER,
                    "heartbeats_sent": 4,
                    "heartbeats_recv": 3,
                },
            ]
        }
    },
    "config show": {"json": {"version": 3, "hash": "ab" * 32, "tentative": False}},
    "journal show": {"json": {"head_hash": "cd" * 32, "next_seq": 12, "entries": []}},
    "stats": {"json": {"listening": 1, "listen_port": 9253, "sessions_active": 1}},
}


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    mod = tmp_path / "sys" / "module" / "pool"
    monkeypatch.setattr(poolctl_utils, "SYS_MODULE", str(mod))
    monkeypatch.setattr(poolctl_utils, "DEV_POOL", str(tmp_path / "dev-pool"))
    return mod


def load(mod, tmp_path):
    (mod / "parameters").mkdir(parents=True)
    (mod / "version").write_text("0.1.0+0123456789ab\n")
    (mod / "srcversion").write_text("ABCDEF0123456789\n")
    (mod / "taint").write_text("O\n")
    (mod / "parameters" / "port").write_text("9253\n")
    dev = tmp_path / "dev-pool"
    dev.write_text("")
    dev.chmod(0o600)


@pytest.fixture
def fake(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    return FakePoolctl(folder, FIXTURE)


def test_not_loaded_no_poolctl_calls(sysfs, fake, capsys):
    code, res = run_module(info.main, {"poolctl_path": str(fake.path)}, capsys)
    assert code == 0
    assert res["loaded"] is False and res["changed"] is False
    assert res["public_key"] is None and res["peers"] == [] and res["sessions"] == []
    assert res["module"]["version"] is None
    assert fake.calls == []


def test_no_poolctl_anywhere(sysfs, tmp_path, monkeypatch, capsys):
    load(sysfs, tmp_path)
    monkeypatch.setattr(poolctl_utils, "POOLCTL_DIRS", [str(tmp_path / "none")])
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    code, res = run_module(info.main, {}, capsys)
    assert code == 0
    assert res["loaded"] is True and res["poolctl"] is None
    assert res["module"]["version"] == "0.1.0+0123456789ab"
    assert res["public_key"] is None


def test_loaded_full_facts(sysfs, tmp_path, fake, capsys):
    load(sysfs, tmp_path)
    code, res = run_module(info.main, {"poolctl_path": str(fake.path)}, capsys)
    assert code == 0, res
    assert res["loaded"] is True
    assert res["module"]["parameters"] == {"port": 9253}
    assert res["module"]["device"]["mode"] == "0600"
    assert res["module"]["taint"] == "O"
    assert res["public_key"] == PUB
    assert res["address"].startswith("00010001:")
    assert [p["public_key"] for p in res["peers"]] == [PEER]
    assert res["sessions"][0]["state"] == "ESTABLISHED"
    assert res["config_version"] == 3
    assert res["journal_head"] == "cd" * 32 and res["journal_next_seq"] == 12
    assert res["listening"] is True and res["listen_port"] == 9253
    assert all(call[0] == "--json" for call in fake.calls)
    assert len(fake.calls) == 6


def test_gather_subset(sysfs, tmp_path, fake, capsys):
    load(sysfs, tmp_path)
    code, res = run_module(info.main, {"poolctl_path": str(fake.path), "gather": ["stats"]}, capsys)
    assert code == 0
    assert [c[1] for c in fake.calls] == ["stats"]
    assert res["public_key"] is None


def test_identity_not_set(sysfs, tmp_path, fake, capsys):
    load(sysfs, tmp_path)
    fake.set_fixture(dict(FIXTURE, **{"identity show": {"json": {"public_key": None, "set": False}}}))
    code, res = run_module(info.main, {"poolctl_path": str(fake.path), "gather": ["identity"]}, capsys)
    assert code == 0 and res["public_key"] is None


def test_poolctl_failure_is_one_clear_line(sysfs, tmp_path, fake, capsys):
    load(sysfs, tmp_path)
    fake.set_fixture(dict(FIXTURE, sessions={"rc": 1, "stderr": "poolctl: sessions: permission denied on /dev/pool"}))
    code, res = run_module(info.main, {"poolctl_path": str(fake.path)}, capsys)
    assert code == 1 and res["failed"]
    assert res["msg"] == ("poolctl --json sessions failed (exit 1): poolctl: sessions: permission denied on /dev/pool")


def test_poolctl_failure_ignored(sysfs, tmp_path, fake, capsys):
    load(sysfs, tmp_path)
    fake.set_fixture(dict(FIXTURE, sessions={"rc": 1, "stderr": "poolctl: boom"}))
    code, res = run_module(info.main, {"poolctl_path": str(fake.path), "ignore_errors_from_poolctl": True}, capsys)
    assert code == 0
    assert "boom" in res["errors"]["sessions"]
    assert res["public_key"] == PUB


def test_invalid_json(sysfs, tmp_path, fake, capsys):
    load(sysfs, tmp_path)
    fake.set_fixture(dict(FIXTURE, stats={"raw": "not json"}))
    code, res = run_module(info.main, {"poolctl_path": str(fake.path), "gather": ["stats"]}, capsys)
    assert code == 1 and "printed no valid JSON" in res["msg"]


def test_bad_poolctl_path(sysfs, tmp_path, capsys):
    code, res = run_module(info.main, {"poolctl_path": str(tmp_path / "nope")}, capsys)
    assert code == 1 and "is not an executable file" in res["msg"]


def test_bad_gather_choice(sysfs, capsys):
    code, res = run_module(info.main, {"gather": ["bogus"]}, capsys)
    assert code == 1 and "bogus" in res["msg"]
