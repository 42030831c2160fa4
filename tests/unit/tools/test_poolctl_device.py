"""Device and FakeDevice: same interface, clear errors without a module, atomic secret writes."""

from __future__ import annotations

import inspect
import os
import stat
from pathlib import Path

import pytest
from pooltools.common import fsutil, keyfile
from pooltools.kernel import device, fakedevice


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {n: inspect.signature(f) for n, f in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


def test_fake_device_has_the_device_interface() -> None:
    real, fake = _public(device.Device), _public(fakedevice.FakeDevice)
    for name, sig in real.items():
        assert name in fake, name
        assert list(sig.parameters) == list(fake[name].parameters), name


def test_fake_session_has_the_session_interface() -> None:
    real, fake = _public(device.Session), _public(fakedevice.FakeSession)
    for name in ("info", "send", "recv", "set_channel", "close", "fileno", "wait_readable"):
        assert list(real[name].parameters) == list(fake[name].parameters), name


def test_open_missing_device(tmp_path: Path) -> None:
    with pytest.raises(device.PoolError) as exc:
        device.Device(str(tmp_path / "pool"))
    assert str(exc.value) == f"{tmp_path / 'pool'} missing: pool.ko not loaded (modprobe pool)"
    assert exc.value.exit_code == device.EXIT_NO_MODULE


def test_ioctl_on_something_else_says_abi_mismatch(tmp_path: Path) -> None:
    f = tmp_path / "notpool"
    f.write_bytes(b"")
    with device.Device(str(f)) as dev, pytest.raises(device.PoolError) as exc:
        dev.stats()
    assert str(exc.value) == "read statistics: ioctl not supported by the loaded pool.ko (module and tools ABI differ)"


def test_errno_table_has_one_line_messages() -> None:
    for table in (device._COMMON, device.PEER_ADD_ERRORS, device.CONNECT_ERRORS, device.LISTEN_ERRORS):
        for why, code in table.values():
            assert "\n" not in why and code in device.EXIT_CODES


def test_atomic_write_mode_before_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    old = os.umask(0)
    try:
        fsutil.atomic_write(tmp_path / "secret", b"x" * 10, mode=0o600)
    finally:
        os.umask(old)
    assert seen and all(m == 0o600 for m in seen)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_atomic_write_no_overwrite(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("old")
    with pytest.raises(FileExistsError):
        fsutil.atomic_write(p, b"new", overwrite=False)
    assert p.read_text() == "old" and [x.name for x in tmp_path.iterdir()] == ["f"]


def test_generate_needs_the_folder(tmp_path: Path) -> None:
    with pytest.raises(device.PoolError, match="does not exist"):
        keyfile.generate(tmp_path / "nope" / "private.key")
