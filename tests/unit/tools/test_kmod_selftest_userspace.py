"""pool.ko's known-answer self-test (kmod/selftest.c), compiled in userspace against OpenSSL.

kmod/selftest.c, handshake.c and wire.c are built unchanged with a small shim
(kmod_shim/: kernel library calls and kmod/crypto.h on OpenSSL) and run: the C
handshake, transport packet, rekey, address and journal code must reproduce
tests/vectors, which the Python codec generated. The VM still runs the real
thing at module load; this catches a mismatch between the two implementations
in a second. A vectors.h with one byte changed must make it fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
KMOD = REPO / "kmod"
SHIM = Path(__file__).resolve().parent / "kmod_shim"
SOURCES = ("selftest.c", "selftest_vectors.c", "handshake.c", "wire.c")
FORWARDED = [
    "linux/kernel.h",
    "linux/random.h",
    "linux/sched.h",
    "linux/sched/signal.h",
    "linux/string.h",
    "linux/timekeeping.h",
    "linux/init.h",
    "linux/slab.h",
    "linux/crc32.h",
    "linux/spinlock.h",
    "linux/unaligned.h",
    "asm/unaligned.h",
    "linux/compiler.h",
    "linux/mm.h",
    "linux/scatterlist.h",
    "linux/sizes.h",
    "linux/module.h",
    "linux/build_bug.h",
    "linux/minmax.h",
    "linux/uio.h",
    "linux/math64.h",
    "linux/time64.h",
    "linux/printk.h",
    "linux/version.h",
    "crypto/algapi.h",
    "crypto/curve25519.h",
    "crypto/sha2.h",
    "crypto/aead.h",
]


def _build(tmp: Path, kmod: Path, main: str = "main.c", name: str = "kat") -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc not installed")
    for header in ("/usr/include/openssl/evp.h", "/usr/include/zlib.h", "/usr/include/linux/errno.h"):
        if not Path(header).exists():
            pytest.skip(f"{header} missing (libssl-dev, zlib1g-dev, linux-libc-dev)")
    missing = [s for s in SOURCES if not (kmod / s).exists()]
    # a source renamed or split away must fail here, not skip: SOURCES follows kmod/Kbuild
    assert not missing, f"kmod/{missing[0]} is gone: update SOURCES"
    inc = tmp / "inc"
    for header in FORWARDED:
        (inc / header).parent.mkdir(parents=True, exist_ok=True)
        (inc / header).write_text('#include "shim.h"\n')
    shutil.copy(SHIM / "shim.h", inc / "shim.h")
    exe = tmp / name
    cmd = [
        "gcc", "-std=gnu11", "-O1", "-w", '-DKBUILD_MODNAME="pool"',
        "-include", str(inc / "shim.h"), f"-I{inc}", f"-I{kmod}",
        "-o", str(exe), str(SHIM / main), str(SHIM / "shim.c"),
        *(str(kmod / s) for s in SOURCES), "-lcrypto", "-lz",
    ]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # A source the shim cannot build is a failure, not a skip: extend kmod_shim/ with what it needs.
    assert p.returncode == 0, f"kmod sources do not build against the userspace shim:\n{p.stderr[-3000:]}"
    return exe


def test_kmod_selftest_passes_in_userspace(tmp_path: Path) -> None:
    exe = _build(tmp_path, KMOD)
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "known-answer tests passed" in p.stderr


def test_kmod_selftest_fails_on_a_wrong_vector(tmp_path: Path) -> None:
    kmod = tmp_path / "kmod"
    shutil.copytree(KMOD, kmod, ignore=shutil.ignore_patterns("*.o", "*.ko", ".*.cmd"))
    text = (kmod / "vectors.h").read_text()
    # Flip the last byte of the transport keys the handshake must derive.
    m = re.search(r"pool_vec_handshake_transport_okm\[\][^{]*\{[^}]*?0x([0-9a-f]{2}),\s*\}", text)
    assert m
    flipped = f"0x{int(m.group(1), 16) ^ 1:02x}"
    text = text[: m.start(1) - 2] + flipped + text[m.end(1) :]
    (kmod / "vectors.h").write_text(text)
    exe = _build(tmp_path, kmod)
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode != 0
    assert "known-answer tests failed" in p.stderr


def test_untrusted_key_costs_the_responder_the_same_work(tmp_path: Path) -> None:
    """RESPONSE step 4 (docs/protocol.md): a stranger's RESPONSE gets the same DHs and AEAD
    operations as a trusted peer's before it is refused (kmod_shim/dhcount.c counts them)."""
    exe = _build(tmp_path, KMOD, main="dhcount.c", name="dhcount")
    p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
