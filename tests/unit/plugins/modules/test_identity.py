"""pool.ops.identity against a fake poolctl."""

from __future__ import annotations

import os

import pytest
from ansible_collections.pool.ops.plugins.modules import identity
from ansible_collections.pool.ops.tests.unit.plugins.fake_poolctl import FakePoolctl, run_module

PUB = "q" * 43 + "="
ADDR = "00010001:" + "00000000:" * 6 + "12345678"
FIXTURE = {
    "identity generate": {"json": {"public_key": PUB, "address": ADDR}},
    "identity show": {"json": {"public_key": PUB, "address": ADDR}},
}


@pytest.fixture
def fake(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    return FakePoolctl(folder, FIXTURE)


def args(fake, key, **extra):
    return dict({"path": str(key), "poolctl_path": str(fake.path)}, **extra)


def verbs(fake):
    return [c[1:3] for c in fake.calls]


def test_creates_key_then_idempotent(tmp_path, fake, capsys):
    key = tmp_path / "private.key"
    code, res = run_module(identity.main, args(fake, key), capsys)
    assert code == 0, res
    assert res["changed"] is True and res["created"] is True
    assert res["public_key"] == PUB and res["address"] == ADDR
    assert (key.stat().st_mode & 0o777) == 0o600
    assert verbs(fake) == [["identity", "generate"]]
    assert "--force" not in fake.calls[0]
    assert res["diff"]["before"]["state"] == "absent"
    assert "SECRET-KEY-MATERIAL" not in str(res)  # the key content is never returned

    code, res = run_module(identity.main, args(fake, key), capsys)
    assert code == 0 and res["changed"] is False and res["created"] is False
    assert res["public_key"] == PUB
    assert verbs(fake)[1:] == [["identity", "show"]]


def test_check_mode_creates_nothing(tmp_path, fake, capsys):
    key = tmp_path / "private.key"
    code, res = run_module(identity.main, args(fake, key, _ansible_check_mode=True), capsys)
    assert code == 0 and res["changed"] is True and res["public_key"] is None
    assert not key.exists()
    assert fake.calls == []


def test_loose_mode_is_fixed_and_warned(tmp_path, fake, capsys):
    key = tmp_path / "private.key"
    key.write_text("x")
    key.chmod(0o644)
    code, res = run_module(identity.main, args(fake, key), capsys)
    assert code == 0 and res["changed"] is True and res["created"] is False
    assert (key.stat().st_mode & 0o777) == 0o600
    assert res["diff"]["before"]["mode"] == "0644"
    assert "0644" in str(res.get("warnings"))


def test_loose_mode_check_mode_changes_nothing(tmp_path, fake, capsys):
    key = tmp_path / "private.key"
    key.write_text("x")
    key.chmod(0o644)
    code, res = run_module(identity.main, args(fake, key, _ansible_check_mode=True), capsys)
    assert code == 0 and res["changed"] is True
    assert (key.stat().st_mode & 0o777) == 0o644


def test_regenerated(tmp_path, fake, capsys):
    key = tmp_path / "private.key"
    key.write_text("old")
    os.chmod(key, 0o600)
    code, res = run_module(identity.main, args(fake, key, state="regenerated"), capsys)
    assert code == 0 and res["changed"] is True and res["created"] is True
    assert verbs(fake) == [["identity", "generate"]]
    assert "--force" in fake.calls[0]


def test_missing_folder(tmp_path, fake, capsys):
    key = tmp_path / "nope" / "private.key"
    code, res = run_module(identity.main, args(fake, key), capsys)
    assert code == 1 and "does not exist" in res["msg"]
    assert fake.calls == []


def test_not_a_file(tmp_path, fake, capsys):
    code, res = run_module(identity.main, args(fake, tmp_path), capsys)
    assert code == 1 and "not a regular file" in res["msg"]


def test_poolctl_error(tmp_path, fake, capsys):
    fake.set_fixture({"identity generate": {"rc": 1, "stderr": "poolctl: identity generate: disk full"}})
    code, res = run_module(identity.main, args(fake, tmp_path / "k"), capsys)
    assert code == 1 and res["msg"].endswith("poolctl: identity generate: disk full")


def test_no_poolctl(tmp_path, monkeypatch, capsys):
    from ansible_collections.pool.ops.plugins.module_utils import poolctl

    monkeypatch.setattr(poolctl, "POOLCTL_DIRS", [str(tmp_path / "none")])
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    code, res = run_module(identity.main, {"path": str(tmp_path / "k")}, capsys)
    assert code == 1 and "poolctl not found" in res["msg"]


def test_org_id_range(tmp_path, fake, capsys):
    code, res = run_module(identity.main, args(fake, tmp_path / "k", org_id=-1), capsys)
    assert code == 1 and "org_id" in res["msg"]


def test_absent_removes_the_key_then_idempotent(tmp_path, fake, capsys):
    key = tmp_path / "private.key"
    key.write_text("SECRET-KEY-MATERIAL\n")
    key.chmod(0o600)
    code, res = run_module(identity.main, args(fake, key, state="absent", _ansible_check_mode=True), capsys)
    assert code == 0 and res["changed"] is True and key.exists()
    code, res = run_module(identity.main, args(fake, key, state="absent"), capsys)
    assert code == 0 and res["changed"] is True and res["public_key"] is None
    assert res["diff"] == {
        "before": {"path": str(key), "state": "present"},
        "after": {"path": str(key), "state": "absent"},
    }
    assert not key.exists() and fake.calls == []  # no poolctl needed
    code, res = run_module(identity.main, args(fake, key, state="absent"), capsys)
    assert code == 0 and res["changed"] is False


def test_absent_refuses_what_is_not_a_key_file(tmp_path, fake, capsys):
    target = tmp_path / "elsewhere"
    target.write_text("x")
    link = tmp_path / "private.key"
    link.symlink_to(target)
    code, res = run_module(identity.main, args(fake, link, state="absent"), capsys)
    assert code == 1 and "not a regular file" in res["msg"]
    assert link.is_symlink() and target.exists()
