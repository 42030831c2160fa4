"""pooltools' imports run one way: services -> config -> common -> kernel binding -> protocol.

A module may import from its own package and from the layers below it, never from a layer
above or from another service: the protocol knows nothing of pool.ko, and the vault does not
reach into poolctl.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[3] / "tools" / "pooltools"
LAYERS = ["protocol", "kernel", "common", "config"]
SERVICES = {"bridge", "exporter", "poolctl", "poold", "relay", "testing", "vault"}


def allowed(package: str) -> set[str]:
    below = LAYERS[: LAYERS.index(package) + 1] if package in LAYERS else [*LAYERS, package]
    return {"", *below}  # "" is pooltools itself (__version__)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, package under pooltools) of every pooltools import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    here = path.parent.name
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                out.append((node.lineno, here))
            elif node.level == 0 and node.module and node.module.split(".")[0] == "pooltools":
                parts = node.module.split(".")
                if len(parts) == 1:  # from pooltools import __version__ / a package
                    out += [(node.lineno, a.name if a.name in {*LAYERS, *SERVICES} else "") for a in node.names]
                else:
                    out.append((node.lineno, parts[1]))
            elif node.level > 1:
                out.append((node.lineno, "<relative beyond the package>"))
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "pooltools":
                    out.append((node.lineno, parts[1] if len(parts) > 1 else ""))
    return out


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p.parent != PKG)


def test_every_module_lives_in_a_known_package() -> None:
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py"], f"modules outside the sub-packages: {top}"
    assert {p.parent.name for p in modules()} == {*LAYERS, *SERVICES}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_run_one_way(path: Path) -> None:
    package = path.parent.name
    bad = [f"line {line}: pooltools.{target}" for line, target in imports(path) if target not in allowed(package)]
    assert not bad, f"{path.relative_to(PKG)} ({package}) imports upward or across services: {bad}"


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    fake = tmp_path / "protocol" / "x.py"
    fake.parent.mkdir()
    fake.write_text("from pooltools.kernel import uapi\nfrom . import wire\n")
    assert [t for _, t in imports(fake) if t not in allowed("protocol")] == ["kernel"]


def test_the_wheel_ships_every_package() -> None:
    import tomllib

    listed = set(tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {"pooltools", *(f"pooltools.{p.parent.name}" for p in PKG.glob("*/__init__.py"))}
    assert listed == on_disk
