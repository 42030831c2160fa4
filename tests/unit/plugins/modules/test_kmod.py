"""Unit tests for pool.ops.kmod with faked commands: headers, signer check, Secure Boot, load decisions."""

from __future__ import annotations

import re

import pytest
from ansible_collections.pool.ops.plugins.module_utils import dkms, kmod_host
from ansible_collections.pool.ops.plugins.modules import kmod

CERT_TEXT = """\
subject=
    commonName                = pool.ops module signing (node1)
issuer=
    commonName                = pool.ops module signing (node1)
serial=0A1B2C
"""
FACTS = dkms.parse_openssl_x509(CERT_TEXT)
SIGNER = "pool.ops module signing (node1)"
SIG_KEY = "0A:1B:2C"


class FakeModule:
    """The parts of AnsibleModule that Kmod uses; commands answered from a table."""

    def __init__(self, params=None, check_mode=False, answers=None):
        self.params = dict(
            name="pool",
            state="loaded",
            src=None,
            remote_src=True,
            kernels=["running"],
            install_headers=False,
            params={},
            autoload=True,
            sign=True,
            signing_key=None,
            signing_cert=None,
            signing_key_content=None,
            signing_cert_content=None,
            signing_dir="/nonexistent",
            signing_cn=None,
            enroll_mok=False,
            mok_password=None,
            service="poold",
            remove_stale=True,
            packages=None,
        )
        self.params.update(params or {})
        self.check_mode = check_mode
        self._diff = True
        self.answers = answers or {}
        self.calls = []
        self.warnings = []

    def run_command(self, argv, data=None, environ_update=None):
        self.calls.append((list(argv), data))
        key = " ".join(argv)
        for prefix, answer in self.answers.items():
            if key.startswith(prefix):
                return answer
        return 0, "", ""

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return "/usr/bin/" + name

    def warn(self, msg):
        self.warnings.append(msg)


def make(params=None, check_mode=False, answers=None):
    module = FakeModule(params, check_mode, answers)
    return module, kmod.Kmod(module)


# ---------------------------------------------------------------- headers


def test_missing_headers_message_names_the_package():
    assert kmod_host.missing_headers_message("6.1.0-x-amd64") == (
        "kernel headers for 6.1.0-x-amd64 missing: install linux-headers-6.1.0-x-amd64 (or set install_headers: true)"
    )


def test_missing_headers_fail_without_install(monkeypatch):
    module, k = make()
    monkeypatch.setattr(kmod.Kmod, "has_headers", staticmethod(lambda kernel: False))
    with pytest.raises(kmod_host.KmodError, match=re.escape("install linux-headers-6.1.0-9-amd64")):
        k.ensure_headers(["6.1.0-9-amd64"])
    assert module.calls == []


def test_missing_headers_installed_when_asked(monkeypatch):
    installed = set()
    module, k = make({"install_headers": True})
    monkeypatch.setattr(kmod.Kmod, "has_headers", staticmethod(lambda kernel: kernel in installed))

    def apt(argv, data=None, environ_update=None):
        installed.add("6.1.0-9-amd64")
        module.calls.append((argv, data))
        return 0, "", ""

    module.run_command = apt
    k.ensure_headers(["6.1.0-9-amd64"])
    assert module.calls[0][0][-1] == "linux-headers-6.1.0-9-amd64"
    assert k.changed


def test_missing_headers_check_mode_changes_nothing(monkeypatch):
    module, k = make({"install_headers": True}, check_mode=True)
    monkeypatch.setattr(kmod.Kmod, "has_headers", staticmethod(lambda kernel: False))
    k.ensure_headers(["6.1.0-9-amd64"])
    assert k.changed and module.calls == []
    assert k.actions == ["install linux-headers-6.1.0-9-amd64"]


# ---------------------------------------------------------------- signatures


def test_check_signature_accepts_our_certificate():
    kmod_host.check_signature(SIGNER, SIG_KEY, FACTS, "pool.ko")


@pytest.mark.parametrize(
    ("signer", "sig_key"),
    [("DKMS module signing key", SIG_KEY), (SIGNER, "FF:EE"), ("", ""), (SIGNER, "")],
)
def test_check_signature_rejects_others(signer, sig_key):
    with pytest.raises(kmod_host.KmodError, match=re.escape("signature check failed for pool.ko")):
        kmod_host.check_signature(signer, sig_key, FACTS, "pool.ko")


def test_installed_ok_reads_modinfo(monkeypatch):
    answers = {
        "/usr/bin/modinfo -F version": (0, "0.1.0+abc\n", ""),
        "/usr/bin/modinfo -F signer": (0, SIGNER + "\n", ""),
        "/usr/bin/modinfo -F sig_key": (0, SIG_KEY + "\n", ""),
    }
    _module, k = make(answers=answers)
    k.modinfo_bin = "/usr/bin/modinfo"
    monkeypatch.setattr(k, "installed_module", lambda kernel: "/lib/modules/x/updates/dkms/pool.ko")
    assert k.installed_ok("0.1.0+abc", "x", FACTS)
    assert not k.installed_ok("0.1.0+def", "x", FACTS)
    answers["/usr/bin/modinfo -F signer"] = (0, "DKMS module signing key\n", "")
    assert not k.installed_ok("0.1.0+abc", "x", FACTS)
    monkeypatch.setattr(k, "installed_module", lambda kernel: None)
    assert not k.installed_ok("0.1.0+abc", "x", FACTS)


def test_sign_module_strips_old_signature_and_checks(tmp_path, monkeypatch):
    built = tmp_path / "pool.ko"
    body = b"\x7fELF" + b"\0" * 64
    old_sig = b"D" * 20 + b"\0\0\x02\0\0\0\0\0\0\0\0\x14" + dkms.SIG_MAGIC
    built.write_bytes(body + old_sig)
    seen = {}

    def run_command(argv, data=None, environ_update=None):
        if argv[0].endswith("sign-file"):
            path = argv[-1]
            with open(path, "rb") as f:
                seen["unsigned"] = f.read()
            with open(path, "ab") as f:
                f.write(b"NEWSIG")
            return 0, "", ""
        if argv[:3] == ["/usr/bin/modinfo", "-F", "signer"]:
            return 0, SIGNER + "\n", ""
        if argv[:3] == ["/usr/bin/modinfo", "-F", "sig_key"]:
            return 0, SIG_KEY + "\n", ""
        return 1, "", "unexpected"

    module, k = make()
    module.run_command = run_command
    k.modinfo_bin = "/usr/bin/modinfo"
    monkeypatch.setattr(k, "sign_file_for", lambda kernel: "/usr/lib/linux-kbuild-6.1/scripts/sign-file")
    k.sign_module(str(built), "6.1.0-9-amd64", "/k.pem", "/c.pem", FACTS)
    k.cleanup()
    assert seen["unsigned"] == body
    assert built.read_bytes() == body + b"NEWSIG"


# ---------------------------------------------------------------- Secure Boot


@pytest.mark.parametrize(
    ("out", "err", "state"),
    [
        ("", "EFI variables are not supported on this system\n", "unsupported"),
        ("SecureBoot enabled\n", "", "enabled"),
        ("SecureBoot disabled\nPlatform is in Setup Mode\n", "", "disabled"),
        ("", "something odd\n", "unknown"),
    ],
)
def test_parse_sb_state(out, err, state):
    assert kmod_host.parse_sb_state(0, out, err) == state


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("/var/lib/pool/signing/pool-signing.der is already enrolled\n", (True, False)),
        ("/var/lib/pool/signing/pool-signing.der is not enrolled\n", (False, False)),
        ("/var/lib/pool/signing/pool-signing.der is already in the enrollment request\n", (False, True)),
        ("", (None, False)),
    ],
)
def test_parse_test_key(out, expected):
    assert kmod_host.parse_test_key(out, "") == expected


def _mok(tmp_path, sb, test_key, check_mode=False):
    cert = tmp_path / "pool-signing.crt"
    cert.write_text("PEM")
    (tmp_path / "pool-signing.der").write_bytes(b"DER")
    answers = {"/usr/bin/mokutil --sb-state": sb, "/usr/bin/mokutil --test-key": test_key}
    module, k = make({"enroll_mok": True, "mok_password": "s3cret"}, check_mode=check_mode, answers=answers)
    k.secure_boot(str(cert), FACTS)
    return module, k


def test_mok_unsupported_is_not_a_failure(tmp_path):
    module, k = _mok(tmp_path, (1, "", "EFI variables are not supported on this system\n"), (0, "", ""))
    assert k.result["sb_state"] == "unsupported"
    assert not k.changed and not k.result["reboot_required"]
    assert not any("--import" in call[0] for call in module.calls)
    assert module.warnings


def test_mok_import_feeds_the_password_twice(tmp_path):
    module, k = _mok(tmp_path, (0, "SecureBoot enabled\n", ""), (0, "x is not enrolled\n", ""))
    imports = [call for call in module.calls if "--import" in call[0]]
    assert len(imports) == 1
    assert imports[0][1] == "s3cret\ns3cret\n"
    assert "s3cret" not in " ".join(imports[0][0])
    assert k.changed and k.result["reboot_required"] and k.result["mok_enrolled"] is False


def test_mok_enrolled_changes_nothing(tmp_path):
    module, k = _mok(tmp_path, (0, "SecureBoot enabled\n", ""), (1, "x is already enrolled\n", ""))
    assert not k.changed and not k.result["reboot_required"] and k.result["mok_enrolled"] is True
    assert not any("--import" in call[0] for call in module.calls)


def test_mok_pending_reports_reboot(tmp_path):
    _module, k = _mok(tmp_path, (0, "SecureBoot enabled\n", ""), (0, "x is already in the enrollment request\n", ""))
    assert not k.changed and k.result["reboot_required"]


def test_mok_check_mode_imports_nothing(tmp_path):
    module, k = _mok(tmp_path, (0, "SecureBoot enabled\n", ""), (0, "x is not enrolled\n", ""), check_mode=True)
    assert k.changed and k.result["reboot_required"]
    assert not any("--import" in call[0] for call in module.calls)


# ---------------------------------------------------------------- files and load decisions


def test_write_file_diff_and_check_mode(tmp_path):
    path = tmp_path / "pool.conf"
    path.write_text("old\n")
    _module, k = make(check_mode=True)
    assert k.write_file(str(path), "new\n")
    assert path.read_text() == "old\n"
    assert k.diff[0]["before"] == "old\n" and k.diff[0]["after"] == "new\n"
    _module, k = make()
    assert k.write_file(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert not k.write_file(str(path), "new\n")


def test_write_file_reports_and_fixes_mode_drift(tmp_path):
    path = tmp_path / "pool.conf"
    path.write_text("same\n")
    path.chmod(0o666)
    _module, k = make(check_mode=True)
    assert k.write_file(str(path), "same\n")
    assert (path.stat().st_mode & 0o777) == 0o666  # check mode changes nothing
    assert k.actions == [f"set the mode of {path} to 0644 (was 0666)"]
    assert k.diff == [
        {"before_header": f"{path} (mode)", "after_header": f"{path} (mode)", "before": "0666\n", "after": "0644\n"}
    ]
    _module, k = make()
    assert k.write_file(str(path), "same\n") and k.changed
    assert (path.stat().st_mode & 0o777) == 0o644
    _module, k = make()
    assert not k.write_file(str(path), "same\n") and not k.changed


def test_loose_signing_folder_is_reported(tmp_path):
    sdir = tmp_path / "signing"
    sdir.mkdir()
    sdir.chmod(0o755)
    _module, k = make(check_mode=True)
    k.ensure_signing_dir(str(sdir))
    assert k.changed and k.actions == [f"set the mode of {sdir} to 0700 (was 0755)"]
    assert (sdir.stat().st_mode & 0o777) == 0o755
    _module, k = make()
    k.ensure_signing_dir(str(sdir))
    assert k.changed and (sdir.stat().st_mode & 0o777) == 0o700
    _module, k = make()
    k.ensure_signing_dir(str(sdir))
    assert not k.changed


@pytest.mark.parametrize(
    ("live_version", "live_src", "params_changed", "reload"),
    [
        ("0.1.0+abc", "SRC1", False, False),
        ("0.1.0+old", "SRC0", False, True),
        ("0.1.0+abc", "SRC0", False, True),
        ("0.1.0+abc", "SRC1", True, True),
    ],
)
def test_load_reloads_only_when_needed(monkeypatch, live_version, live_src, params_changed, reload):
    _module, k = make(answers={"/usr/bin/modinfo -F srcversion": (0, "SRC1\n", "")})
    k.modinfo_bin = "/usr/bin/modinfo"
    monkeypatch.setattr(k, "is_loaded", lambda: True)
    monkeypatch.setattr(k, "installed_module", lambda kernel: "/lib/modules/x/updates/dkms/pool.ko")
    monkeypatch.setattr(k, "sys_attr", lambda attr: {"version": live_version, "srcversion": live_src}[attr])
    done = []
    monkeypatch.setattr(k, "reload", lambda old, version: done.append(version))
    k.load("0.1.0+abc", params_changed, [])
    assert bool(done) == reload
    assert k.result["reloaded"] == reload
    assert k.changed == reload


def test_reload_drains_poold_and_restarts_it(monkeypatch):
    module, k = make(answers={"/usr/bin/systemctl is-active": (0, "", "")})
    k.modprobe_bin = "/usr/bin/modprobe"
    k.reload([], "0.1.0+abc")
    argvs = [" ".join(call[0]) for call in module.calls]
    stop = argvs.index("/usr/bin/systemctl stop poold")
    unload = argvs.index("/usr/bin/modprobe -r pool")
    load = argvs.index("/usr/bin/modprobe pool")
    start = argvs.index("/usr/bin/systemctl start poold")
    assert stop < unload < load < start


def test_modprobe_secure_boot_rejection_names_the_fix():
    err = "modprobe: ERROR: could not insert 'pool': Key was rejected by service\n"
    _module, k = make(answers={"/usr/bin/modprobe pool": (1, "", err)})
    k.modprobe_bin = "/usr/bin/modprobe"
    with pytest.raises(kmod_host.KmodError, match="enroll_mok: true"):
        k.modprobe()


def test_target_kernels(monkeypatch):
    _module, k = make({"state": "loaded", "kernels": ["all"]})
    k.running = "6.1.0-9-amd64"
    monkeypatch.setattr(k, "installed_kernels", lambda: ["6.1.0-8-amd64", "6.1.0-9-amd64", "6.12.1-amd64"])
    monkeypatch.setattr(kmod.Kmod, "has_headers", staticmethod(lambda kernel: kernel != "6.1.0-8-amd64"))
    monkeypatch.setattr(kmod.os.path, "isdir", lambda path: True)
    assert k.target_kernels() == ["6.1.0-9-amd64", "6.12.1-amd64"]
    assert "linux-headers-6.1.0-8-amd64" in _module.warnings[0]
    _module, k = make({"state": "loaded", "kernels": ["bad kernel"]})
    with pytest.raises(kmod_host.KmodError, match="neither running, all"):
        k.target_kernels()


def test_missing_headers_retry_after_apt_update(monkeypatch):
    installed = set()
    module, k = make({"install_headers": True})
    monkeypatch.setattr(kmod.Kmod, "has_headers", staticmethod(lambda kernel: kernel in installed))
    updated = []

    def apt(argv, data=None, environ_update=None):
        module.calls.append((argv, data))
        if argv[1] == "update":
            updated.append(True)
            return 0, "", ""
        if not updated:
            return 100, "", "E: Unable to locate package linux-headers-6.1.0-9-amd64\n"
        installed.add("6.1.0-9-amd64")
        return 0, "", ""

    module.run_command = apt
    k.ensure_headers(["6.1.0-9-amd64"])
    assert [call[0][1] for call in module.calls] == ["install", "update", "install"]


def test_remove_stale_only_touches_managed_versions(tmp_path, monkeypatch):
    monkeypatch.setattr(kmod_host, "USR_SRC", str(tmp_path))
    for v in ("0.1.0+old", "0.1.0+new", "0.0.1+other"):
        (tmp_path / ("pool-" + v)).mkdir()
    (tmp_path / "pool-0.1.0+old" / dkms.MANAGED_MARKER).write_text("x")
    (tmp_path / "pool-0.1.0+new" / dkms.MANAGED_MARKER).write_text("x")
    entries = dkms.parse_status(
        "pool/0.1.0+old, 6.1.0-9-amd64, x86_64: installed\n"
        "pool/0.0.1+other, 6.1.0-9-amd64, x86_64: built\n"
        "pool/0.1.0+new: added\n",
        "pool",
    )
    module, k = make()
    k.dkms_bin = "/usr/sbin/dkms"
    k.remove_stale("0.1.0+new", ["6.1.0-9-amd64"], entries)
    argvs = [" ".join(call[0]) for call in module.calls]
    assert argvs == ["/usr/sbin/dkms remove -m pool -v 0.1.0+old --all"]
    assert k.result["removed_versions"] == ["0.1.0+old"]
    assert not (tmp_path / "pool-0.1.0+old").exists()
    assert (tmp_path / "pool-0.0.1+other").exists() and (tmp_path / "pool-0.1.0+new").exists()
    assert "not managed" in module.warnings[0]


def test_remove_stale_keeps_versions_other_kernels_use(tmp_path, monkeypatch):
    monkeypatch.setattr(kmod_host, "USR_SRC", str(tmp_path))
    (tmp_path / "pool-0.1.0+old").mkdir()
    (tmp_path / "pool-0.1.0+old" / dkms.MANAGED_MARKER).write_text("x")
    entries = dkms.parse_status(
        "pool/0.1.0+old, 6.1.0-9-amd64, x86_64: installed\npool/0.1.0+old, 6.1.0-8-amd64, x86_64: installed\n", "pool"
    )
    module, k = make()
    k.dkms_bin = "/usr/sbin/dkms"
    k.remove_stale("0.1.0+new", ["6.1.0-9-amd64"], entries)
    assert [" ".join(call[0]) for call in module.calls] == [
        "/usr/sbin/dkms remove -m pool -v 0.1.0+old -k 6.1.0-9-amd64"
    ]
    assert (tmp_path / "pool-0.1.0+old").exists()


# ---------------------------------------------------------------- packages (build host)

FLEET_FIELDS = (
    "Package: pool-modules-{k}\nVersion: 0.1.0+abc\nPool-Module: pool\nPool-Kernel: {k}\n"
    "Pool-Signer: pool.ops module signing (node1)\nPool-Sig-Key: 0A:1B:2C\n"
)


def package_mode(monkeypatch, tmp_path, kernels, fields=FLEET_FIELDS, params=None, answers=None):
    """A Kmod in package mode with one package file per kernel whose dpkg-deb fields are ``fields``."""
    paths = []
    table = dict(answers or {})
    for k in kernels:
        path = tmp_path / f"pool-modules-{k}_0.1.0+abc_amd64.deb"
        path.write_bytes(b"!<arch>")
        paths.append(str(path))
        table[f"/usr/bin/dpkg-deb --field {path}"] = (0, fields.format(k=k), "")
    module, k = make(dict({"packages": paths}, **(params or {})), answers=table)
    k.running = kernels[0]
    monkeypatch.setattr(k, "openssl_facts", lambda cert: FACTS)
    monkeypatch.setattr(k, "fleet_certificate", lambda: ("/var/lib/pool/signing/pool-fleet.crt", FACTS))
    return module, k


def test_packages_refuse_a_signing_key(monkeypatch, tmp_path):
    _module, k = make({"packages": ["/x.deb"], "signing_key": "/k.pem", "signing_cert": "/c.pem"})
    with pytest.raises(kmod_host.KmodError, match="never its key"):
        k.fleet_certificate()


def test_packages_need_the_fleet_certificate():
    _module, k = make({"packages": ["/x.deb"]})
    with pytest.raises(kmod_host.KmodError, match="signing_cert_content"):
        k.fleet_certificate()


def test_packages_need_one_for_the_running_kernel(monkeypatch, tmp_path):
    _module, k = package_mode(monkeypatch, tmp_path, ["6.1.0-9-amd64"])
    k.running = "6.1.0-10-amd64"
    with pytest.raises(
        kmod_host.KmodError, match=re.escape("no package among packages is for the running kernel 6.1.0-10")
    ):
        k.present_packages()


def test_packages_signed_by_another_key_are_refused_before_installing(monkeypatch, tmp_path):
    other = FLEET_FIELDS.replace("0A:1B:2C", "FF:EE")
    module, k = package_mode(monkeypatch, tmp_path, ["6.1.0-9-amd64"], fields=other)
    with pytest.raises(kmod_host.KmodError, match="not by the fleet certificate"):
        k.present_packages()
    assert not [c for c in module.calls if "--install" in c[0]]


def test_packages_two_for_one_kernel_are_refused(monkeypatch, tmp_path):
    module, k = package_mode(monkeypatch, tmp_path, ["6.1.0-9-amd64"])
    module.params["packages"] = module.params["packages"] * 2
    with pytest.raises(kmod_host.KmodError, match=re.escape("both for kernel 6.1.0-9-amd64")):
        k.present_packages()


def test_packages_of_another_module_are_refused(monkeypatch, tmp_path):
    _module, k = package_mode(monkeypatch, tmp_path, ["6.1.0-9-amd64"], params={"name": "other"})
    with pytest.raises(kmod_host.KmodError, match="holds module pool, not other"):
        k.present_packages()


def test_packages_install_only_what_is_not_installed(monkeypatch, tmp_path):
    query = "pool-modules-6.1.0-9-amd64\t0.1.0+abc\tii \npool-modules-6.12.1-amd64\t0.1.0+old\tii \n"
    module, k = package_mode(
        monkeypatch,
        tmp_path,
        ["6.1.0-9-amd64", "6.12.1-amd64"],
        answers={"/usr/bin/dpkg-query": (0, query, "")},
        params={"state": "present"},
    )
    monkeypatch.setattr(k, "dkms_status", list)
    monkeypatch.setattr(
        k,
        "installed_ok",
        lambda version, kernel, facts: (
            kernel == "6.1.0-9-amd64" or bool([c for c in module.calls if "--install" in c[0]])
        ),
    )
    monkeypatch.setattr(k, "write_file", lambda path, content: False)
    monkeypatch.setattr(k, "drop_file", lambda path: False)
    monkeypatch.setattr(k, "installed_module", lambda kernel: None)
    monkeypatch.setattr(k, "secure_boot", lambda cert, facts: None)
    k.present_packages()
    installs = [c[0] for c in module.calls if "--install" in c[0]]
    assert len(installs) == 1 and installs[0][-1].endswith("pool-modules-6.12.1-amd64_0.1.0+abc_amd64.deb")
    assert k.result["installed"] == ["pool-modules-6.12.1-amd64"]
    assert k.result["packages"] == ["pool-modules-6.1.0-9-amd64", "pool-modules-6.12.1-amd64"]


def test_packages_refuse_an_unmanaged_dkms_version_that_would_shadow_them(monkeypatch, tmp_path):
    _module, k = package_mode(monkeypatch, tmp_path, ["6.1.0-9-amd64"])
    monkeypatch.setattr(k, "dkms_status", lambda: dkms.parse_status("pool/0.0.9, 6.1.0-9-amd64, x86_64: installed\n"))
    monkeypatch.setattr(k, "managed", lambda version: False)
    with pytest.raises(kmod_host.KmodError, match="would shadow the package"):
        k.present_packages()


def test_dkms_mode_removes_the_packages_of_its_kernels():
    query = "pool-modules-6.1.0-9-amd64\t0.1.0+abc\tii \npool-modules-6.12.1-amd64\t0.1.0+abc\tii \n"
    module, k = make(answers={"/usr/bin/dpkg-query": (0, query, "")})
    k.remove_packages(["6.1.0-9-amd64"])
    assert k.result["removed_packages"] == ["pool-modules-6.1.0-9-amd64"]
    assert [c[0] for c in module.calls if "--purge" in c[0]] == [
        ["/usr/bin/dpkg", "--purge", "pool-modules-6.1.0-9-amd64"]
    ]
