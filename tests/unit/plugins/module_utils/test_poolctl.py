"""module_utils/poolctl.py: modinfo parsing."""

from __future__ import annotations

from ansible_collections.pool.ops.plugins.module_utils.poolctl import parse_modinfo

MODINFO = """filename:       /lib/modules/6.1.0-28-amd64/updates/dkms/pool.ko
version:        0.1.0+0123456789ab
license:        GPL
srcversion:     5E1C3A0B9F1D2C3B4A5F6E7
depends:        libcurve25519-generic
retpoline:      Y
name:           pool
vermagic:       6.1.0-28-amd64 SMP preempt mod_unload modversions
sig_id:         PKCS#7
signer:         POOL module signing key
sig_key:        1A:2B:3C
                4D:5E
sig_hashalgo:   sha256
parm:           port:TCP port (ushort)
parm:           heartbeat_seconds:seconds (uint)
"""


def test_parse_modinfo():
    parsed = parse_modinfo(MODINFO)
    assert parsed["filename"].endswith("/pool.ko")
    assert parsed["signer"] == "POOL module signing key"
    assert parsed["sig_key"] == "1A:2B:3C4D:5E"
    assert parsed["parm"].startswith("port:")
    assert parsed["version"] == "0.1.0+0123456789ab"


def test_parse_modinfo_unsigned():
    parsed = parse_modinfo("filename: /x/pool.ko\nversion: 0.1.0\n")
    assert "signer" not in parsed
