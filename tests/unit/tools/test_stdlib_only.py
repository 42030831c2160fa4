"""Without `cryptography` (python3-cryptography on the nodes) the parts that need no key still
import and work, and every tool that needs a key says which package is missing."""

from __future__ import annotations

import base64
import json
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


def test_keyless_modules_without_cryptography() -> None:
    p = run(
        "from pooltools.protocol import x25519, keys, address, wire, noise, session\n"
        "pub = bytes(range(1, 33))\n"
        "assert keys.decode_key(keys.encode_key(pub)) == pub\n"
        "print(address.format_address(address.pool_address(pub)))\n"
        "print(len(noise.hmac_sha256(b'k', b'm')), wire.Header.decode(wire.Header(3, 1, payload_len=16).encode()).type)\n"
        "try:\n"
        "    x25519.generate_private()\n"
        "except x25519.BackendMissing as exc:\n"
        "    print(exc)\n"
        "assert 'cryptography' not in sys.modules\n"
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("00010001:")
    assert lines[1] == "32 3"
    assert lines[2].startswith("X25519 keys need the 'cryptography' package") and "python3-cryptography" in lines[2]


def test_poolctl_says_what_is_missing(tmp_path: Path) -> None:
    p = run(
        "from pooltools.poolctl import cli\nsys.exit(cli.main(['--json', 'identity', 'generate', '--key-file', sys.argv[1]]))\n",
        str(tmp_path / "private.key"),
    )
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr.startswith("poolctl: python3-cryptography: X25519 keys need"), p.stderr
    assert json.loads(p.stdout)["error"]["what"] == "python3-cryptography"
    assert not (tmp_path / "private.key").exists()


def test_poold_says_what_is_missing(tmp_path: Path) -> None:
    from pooltools.common import keyfile

    key = tmp_path / "private.key"
    keyfile.generate(key)
    peer = base64.b64encode(bytes(range(1, 33))).decode()
    (tmp_path / "pool.conf").write_text(
        f"[node]\nprivate_key_file = {key}\n[peer node2]\npublic_key = {peer}\nendpoint = 192.0.2.2:9253\n"
    )
    p = run(
        "from pooltools.poold import daemon\n"
        "sys.exit(daemon.main(['--config', sys.argv[1], '--device', sys.argv[2], '--wait-module', '0']))\n",
        str(tmp_path / "pool.conf"),
        str(tmp_path / "no-device"),
    )
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith("poold: X25519 keys need the 'cryptography' package"), p.stderr


def test_refpeer_says_what_is_missing() -> None:
    p = run(
        "from pooltools.testing import refpeer\n"
        "sys.exit(refpeer.main(['connect', '127.0.0.1', '9', '--key', '/dev/null', '--peer-key', sys.argv[1]]))\n",
        "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
    )
    assert p.returncode == 1
    assert "cryptography" in p.stderr and p.stderr.startswith("refpeer: connect:")
