"""Every role's defaults and its argument specs agree: each default is a documented option of an
entry point, with the same default value, and every option documented with a default has it in
defaults/main.yml (what ansible-doc shows is what the role does). A templated default (one read
at run time, such as a path under $HOME) is documented in words instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[3] / "roles").iterdir() if (p / "meta").is_dir())


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_the_argument_specs(role: Path) -> None:
    defaults = load(role / "defaults" / "main.yml")
    entry_points = load(role / "meta" / "argument_specs.yml")["argument_specs"]
    documented = {name for entry in entry_points.values() for name in entry.get("options", {})}
    undocumented = sorted(set(defaults) - documented)
    assert not undocumented, f"{role.name}: defaults without an argument spec: {undocumented}"
    for entry_name, entry in entry_points.items():
        for name, spec in entry.get("options", {}).items():
            if "default" not in spec:
                continue
            where = f"{role.name} ({entry_name}): {name}"
            assert name in defaults, f"{where} has a documented default but none in defaults/main.yml"
            if "{{" not in str(defaults[name]):
                assert defaults[name] == spec["default"], f"{where}: {defaults[name]!r} != {spec['default']!r}"
