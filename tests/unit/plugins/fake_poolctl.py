"""A fake poolctl for module tests: answers from a JSON fixture, logs its calls."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

SCRIPT = r"""#!{python}
import json, os, sys
here = {here!r}
args = sys.argv[1:]
with open(os.path.join(here, "calls.log"), "a") as f:
    f.write(json.dumps(args) + "\n")
with open(os.path.join(here, "fixture.json")) as f:
    fixture = json.load(f)
if args[:1] != ["--json"]:
    sys.stderr.write("poolctl: --json missing\n")
    sys.exit(2)
key = " ".join(a for a in args[1:] if not a.startswith("/"))
for pattern, answer in fixture.items():
    if key.startswith(pattern):
        break
else:
    sys.stderr.write("poolctl: unknown command: " + key + "\n")
    sys.exit(2)
if "rc" in answer:
    sys.stderr.write(answer.get("stderr", "") + "\n")
    sys.exit(answer["rc"])
if args[1:3] == ["identity", "generate"]:
    path = args[args.index("--key-file") + 1]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"SECRET-KEY-MATERIAL\n")
    os.close(fd)
if "raw" in answer:
    sys.stdout.write(answer["raw"])
else:
    json.dump(answer["json"], sys.stdout)
"""


class FakePoolctl:
    def __init__(self, folder: Path, fixture: dict):
        self.folder = folder
        self.path = folder / "poolctl"
        self.set_fixture(fixture)
        self.path.write_text(SCRIPT.format(python=sys.executable, here=str(folder)))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def set_fixture(self, fixture: dict) -> None:
        (self.folder / "fixture.json").write_text(json.dumps(fixture))

    @property
    def calls(self) -> list[list[str]]:
        log = self.folder / "calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


def run_module(main, args: dict, capsys) -> tuple[int, dict]:
    """Run an Ansible module's main() with args; return (exit code, result)."""
    from ansible.module_utils.testing import patch_module_args

    code = None
    with patch_module_args(args):
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        else:  # pragma: no cover - modules always exit
            raise AssertionError("module did not exit")
    out = capsys.readouterr().out
    return code, json.loads(out)


__all__ = ["FakePoolctl", "os", "run_module"]
