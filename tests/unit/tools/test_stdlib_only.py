"""The stdlib helpers import and work without `cryptography` (the CLIs on nodes need no extra package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[3] / "tools"

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError("blocked: " + name, name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code, *args],
        env={"PYTHONPATH": str(TOOLS), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_stdlib_modules_without_cryptography() -> None:
    p = run(
        "from pooltools.protocol import x25519, keys, address, wire, noise, session\n"
        "k = x25519.generate_private(); pub = x25519.public_key(k)\n"
        "assert keys.decode_key(keys.encode_key(pub)) == pub\n"
        "print(address.format_address(address.pool_address(pub)))\n"
        "print(len(noise.hkdf(b's', b'i', b'l', 176)), wire.Header.decode(wire.Header(3, 1, payload_len=16).encode()).type)\n"
        "assert 'cryptography' not in sys.modules\n"
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith("00010001:")
    assert p.stdout.splitlines()[1] == "176 3"


def test_refpeer_says_what_is_missing() -> None:
    p = run(
        "from pooltools.testing import refpeer\n"
        "sys.exit(refpeer.main(['connect', '127.0.0.1', '9', '--key', '/dev/null', '--peer-key', sys.argv[1]]))\n",
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
    )
    assert p.returncode == 1
    assert "cryptography" in p.stderr and p.stderr.startswith("refpeer: connect:")


def test_the_relay_works_without_cryptography_and_signs_nothing(tmp_path: Path) -> None:
    """Without python3-cryptography a relay still relays: it sends no statements and takes
    none (docs/relay.md 6a), instead of failing to start."""
    from pooltools.common import keyfile

    key = tmp_path / "private.key"
    keyfile.generate(key)
    (tmp_path / "pool.conf").write_text(f"[node]\nprivate_key_file = {key}\n")
    p = run(
        "from pathlib import Path\n"
        "from pooltools.kernel.fakedevice import FakeDevice\n"
        "from pooltools.relay import control, statements\n"
        "from pooltools.relay.daemon import RelayDaemon\n"
        "d = Path(sys.argv[1])\n"
        "r = RelayDaemon(FakeDevice, d / 'relay.json', d / 'ledger.json', d / 'pool.conf', None)\n"
        "assert r.static_private is None and r.public and not statements.available()\n"
        "r.send_reports()\n"
        "req = control.Scores(bytes(32), ({'statement': '{}', 'signature': ''},))\n"
        "print(control.decode_reply(r.relay.handle(bytes(32), req)))\n"
        "assert 'cryptography' not in sys.modules\n",
        str(tmp_path),
    )
    assert p.returncode == 0, p.stderr
    assert "python3-cryptography is not installed" in p.stderr
    assert p.stdout.strip() == "{'ok': True, 'taken': 0, 'unknown_observer': 1}"
