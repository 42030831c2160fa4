"""Unit tests for plugins/module_utils/dkms.py: hashing, versions, dkms status, renderings, signatures."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from ansible_collections.pool.ops.plugins.module_utils import dkms

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "kmod-poolfixture"


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


BASE = {
    "VERSION": b"0.1.0\n",
    "dkms.conf": b'PACKAGE_NAME="pool"\nPACKAGE_VERSION="0.1.0"\nAUTOINSTALL="yes"\n',
    "Kbuild": b"obj-m := pool.o\n",
    "main.c": b"int x;\n",
    "uapi/pool.h": b"#define POOL 1\n",
}


def test_source_files_skip_build_outputs_and_hidden(tmp_path):
    make_tree(
        tmp_path,
        {
            **BASE,
            "main.o": b"obj",
            "pool.ko": b"ko",
            ".main.o.cmd": b"c",
            "pool.mod.c": b"m",
            "Module.symvers": b"",
            "modules.order": b"",
            ".git/config": b"x",
            "main.c~": b"old",
        },
    )
    assert dkms.source_files(tmp_path) == ["Kbuild", "VERSION", "dkms.conf", "main.c", "uapi/pool.h"]


def test_hash_ignores_build_outputs(tmp_path):
    a = make_tree(tmp_path / "a", BASE)
    b = make_tree(tmp_path / "b", {**BASE, "main.o": b"object", "pool.ko": b"module"})
    assert dkms.source_hash(a) == dkms.source_hash(b)


@pytest.mark.parametrize(
    "change",
    [
        {"main.c": b"int y;\n"},  # content
        {"extra.c": b""},  # a new (even empty) file
        {"uapi/pool.h": b"#define POOL 1\n", "uapi/pool2.h": b""},
    ],
)
def test_hash_changes_when_sources_change(tmp_path, change):
    a = make_tree(tmp_path / "a", BASE)
    b = make_tree(tmp_path / "b", {**BASE, **change})
    assert dkms.source_hash(a) != dkms.source_hash(b)


def test_hash_changes_on_rename_and_on_moving_bytes():
    base = dkms.hash_contents({"a.c": b"xy", "b.c": b""})
    assert base != dkms.hash_contents({"a.c": b"x", "b.c": b"y"})
    assert base != dkms.hash_contents({"c.c": b"xy", "b.c": b""})


def test_hash_is_stable_and_order_independent():
    one = dkms.hash_contents({"a": b"1", "b": b"2"})
    two = dkms.hash_contents({"b": b"2", "a": b"1"})
    assert one == two
    assert len(one) == 64


def test_prepare_tree_version_and_rendered_conf():
    version, rendered = dkms.prepare_tree(dict(BASE), "pool")
    assert version == "0.1.0+" + dkms.hash_contents(BASE)[:12]
    assert b'PACKAGE_VERSION="%s"' % version.encode() in rendered["dkms.conf"]
    assert b'PACKAGE_NAME="pool"' in rendered["dkms.conf"]
    assert rendered["main.c"] == BASE["main.c"]


def test_prepare_tree_errors():
    with pytest.raises(dkms.SourceError, match=r"dkms\.conf missing"):
        dkms.prepare_tree({"VERSION": b"0.1.0"}, "pool")
    with pytest.raises(dkms.SourceError, match="PACKAGE_NAME='pool' but the module name is 'other'"):
        dkms.prepare_tree(dict(BASE), "other")
    with pytest.raises(dkms.SourceError, match="VERSION file missing"):
        dkms.prepare_tree({k: v for k, v in BASE.items() if k != "VERSION"}, "pool")
    with pytest.raises(dkms.SourceError, match="not a version"):
        dkms.prepare_tree({**BASE, "VERSION": b"0.1 beta\n"}, "pool")
    with pytest.raises(dkms.SourceError, match="PACKAGE_VERSION lines"):
        dkms.render_dkms_conf('PACKAGE_NAME="pool"\n', "1")


def test_fixture_module_follows_the_contract():
    contents = dkms.read_tree(FIXTURE)
    version, rendered = dkms.prepare_tree(contents, "poolfixture")
    assert version.startswith("0.1.0+")
    conf = rendered["dkms.conf"].decode()
    assert dkms.conf_value(conf, "PACKAGE_VERSION") == version
    assert "POOL_VERSION=${PACKAGE_VERSION}" in conf


def test_tar_round_trip_is_deterministic(tmp_path):
    one, two = io.BytesIO(), io.BytesIO()
    dkms.write_tar(dict(BASE), one)
    dkms.write_tar(dict(reversed(list(BASE.items()))), two)
    assert one.getvalue() == two.getvalue()
    path = tmp_path / "src.tar"
    path.write_bytes(one.getvalue())
    assert dkms.read_tar(str(path)) == BASE


def test_read_tar_rejects_unsafe_paths(tmp_path):
    import tarfile

    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("../etc/passwd")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(dkms.SourceError, match="unsafe entry"):
        dkms.read_tar(str(path))


STATUS3 = """\
pool/0.1.0+aaaaaaaaaaaa, 6.1.0-27-amd64, x86_64: installed
pool/0.1.0+aaaaaaaaaaaa, 6.12.12-amd64, x86_64: built
pool/0.1.0+bbbbbbbbbbbb: added
pool/0.0.9+cccccccccccc, 6.1.0-27-amd64, x86_64: installed (WARNING! Diff between built and installed module!)
other/1.0, 6.1.0-27-amd64, x86_64: installed
Error! Could not locate dkms.conf file.
"""

STATUS2 = """\
pool, 0.1.0, 6.1.0-27-amd64, x86_64: installed
pool, 0.2.0: added
"""


def test_parse_status_dkms3():
    entries = dkms.parse_status(STATUS3, "pool")
    assert entries[0] == dkms.StatusEntry("pool", "0.1.0+aaaaaaaaaaaa", "6.1.0-27-amd64", "x86_64", "installed")
    assert entries[2] == dkms.StatusEntry("pool", "0.1.0+bbbbbbbbbbbb", None, None, "added")
    assert entries[3].note.startswith("(WARNING!")
    assert len(entries) == 4
    assert dkms.status_versions(entries) == ["0.1.0+aaaaaaaaaaaa", "0.1.0+bbbbbbbbbbbb", "0.0.9+cccccccccccc"]
    assert dkms.status_state(entries, "0.1.0+aaaaaaaaaaaa", "6.1.0-27-amd64") == "installed"
    assert dkms.status_state(entries, "0.1.0+aaaaaaaaaaaa", "6.12.12-amd64") == "built"
    assert dkms.status_state(entries, "0.1.0+bbbbbbbbbbbb", "6.1.0-27-amd64") == "added"
    assert dkms.status_state(entries, "9.9.9", "6.1.0-27-amd64") is None
    assert dkms.installed_versions(entries, "6.1.0-27-amd64") == ["0.1.0+aaaaaaaaaaaa", "0.0.9+cccccccccccc"]


def test_parse_status_dkms2_and_empty():
    entries = dkms.parse_status(STATUS2, "pool")
    assert [(e.version, e.kernel, e.state) for e in entries] == [
        ("0.1.0", "6.1.0-27-amd64", "installed"),
        ("0.2.0", None, "added"),
    ]
    assert dkms.parse_status("", "pool") == []


def test_render_modprobe_conf():
    text = dkms.render_modprobe_conf("pool", {"rekey_seconds": 120, "port": 9253, "verbose": True, "ids": [1, 2]})
    assert text.splitlines()[0].startswith("# Managed by Ansible")
    assert text.splitlines()[1] == "options pool ids=1,2 port=9253 rekey_seconds=120 verbose=1"
    assert text.endswith("\n")
    assert "options pool" not in dkms.render_modprobe_conf("pool", {})


@pytest.mark.parametrize("params", [{"port": "9 253"}, {"bad-name": 1}, {"port": ""}, {"port": "1#2"}])
def test_render_modprobe_conf_rejects_bad_input(params):
    with pytest.raises(dkms.SourceError):
        dkms.render_modprobe_conf("pool", params)


def test_render_modules_load():
    assert dkms.render_modules_load("pool").splitlines()[-1] == "pool"


def _signature(sig: bytes) -> bytes:
    # struct module_signature: algo, hash, id_type=2 (PKCS#7), signer_len, key_id_len, pad[3], sig_len (be32)
    return sig + struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, len(sig)) + dkms.SIG_MAGIC


def test_strip_signature():
    body = b"\x7fELF" + b"\0" * 100
    assert dkms.strip_signature(body) == body
    assert dkms.strip_signature(body + _signature(b"S" * 40)) == body
    assert dkms.strip_signature(body + _signature(b"A" * 30) + _signature(b"B" * 50)) == body
    assert dkms.is_signed(body + _signature(b"x"))
    with pytest.raises(ValueError):
        dkms.strip_signature(b"\0" * 4 + struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, 999) + dkms.SIG_MAGIC)


OPENSSL = """\
subject=
    commonName                = pool.ops module signing (node1)
issuer=
    commonName                = pool.ops module signing (node1)
serial=23CE28983465D693A2DAB57ECA2C04A9C99A82EA
"""


def test_parse_openssl_x509_and_signature_ok():
    facts = dkms.parse_openssl_x509(OPENSSL)
    assert facts == {
        "subject_cn": "pool.ops module signing (node1)",
        "issuer_cn": "pool.ops module signing (node1)",
        "serial": "23ce28983465d693a2dab57eca2c04a9c99a82ea",
    }
    sig_key = "23:CE:28:98:34:65:D6:93:A2:DA:B5:7E:CA:2C:04:A9:C9:9A:82:EA"
    assert dkms.signature_ok("pool.ops module signing (node1)", sig_key, facts)
    assert not dkms.signature_ok("Debian Secure Boot CA", sig_key, facts)
    assert not dkms.signature_ok("pool.ops module signing (node1)", "00:11", facts)
    assert not dkms.signature_ok("", "", facts)
    assert dkms.serial_matches("00:AB:CD", "abcd")


def test_a_build_failure_names_the_compiler_error_first():
    log = (
        "make -C /lib/modules/6.12.9-amd64/build M=/tmp/x modules\n"
        '/tmp/x/main.c:812:2: error: #error "this source does not build for 6.12"\n'
        '  812 | #error "this source does not build for 6.12"\n'
        "make[2]: *** [scripts/Makefile.build:243: /tmp/x/main.o] Error 1\n"
        "make: *** [Makefile:236: __sub-make] Error 2\n"
    )
    assert dkms.build_failure(log) == '/tmp/x/main.c:812:2: error: #error "this source does not build for 6.12"'
    assert dkms.build_failure("a\nb\n\nc\nd\n") == "b | c | d"  # no compiler error: the last lines
    assert dkms.build_failure(None) == ""
