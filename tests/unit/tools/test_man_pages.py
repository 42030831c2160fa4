"""Every command-line tool's man page against the tool's real argparse parser.

A tool is a ``[project.scripts]`` entry of tools/pyproject.toml; its page is
tools/man/<tool>.8. The parser is walked through every sub-command. Each command, each
long option of each command and each choice of an option must be in the page, and
every long option the page names must exist in the parser: an option added, renamed or
removed without its page fails here.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[3] / "tools"
SCRIPTS: dict[str, str] = tomllib.loads((TOOLS / "pyproject.toml").read_text())["project"]["scripts"]

# Font changes and roff escapes that stand between a reader and the words.
_ROFF_ESCAPES = re.compile(r"\\f[BIRP]|\\&|\\\(..")
_LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def page_text(tool: str) -> str:
    """The page's words: requests' names dropped, escapes resolved, one line per source line."""
    lines = []
    for line in (TOOLS / "man" / f"{tool}.8").read_text().splitlines():
        if line.startswith('.\\"'):
            continue
        if line.startswith("."):
            line = line.split(" ", 1)[1] if " " in line else ""
        line = _ROFF_ESCAPES.sub("", line).replace("\\-", "-").replace('"', "")
        lines.append(line)
    return "\n".join(lines)


def build_parser(tool: str) -> argparse.ArgumentParser:
    module, func = SCRIPTS[tool].split(":")
    assert func == "main", f"{tool}: the entry point is {func}, expected main beside build_parser"
    return importlib.import_module(module).build_parser()


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) for the tool itself and every sub-command under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def long_options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """Every long option a user is meant to see (not --help, not hidden test hooks)."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                yield option, action


@pytest.mark.parametrize("tool", sorted(SCRIPTS))
def test_every_tool_has_a_page_named_after_it(tool: str) -> None:
    page = TOOLS / "man" / f"{tool}.8"
    assert page.is_file(), f"{tool} has no man page at {page}"
    header = page.read_text().splitlines()[0]
    assert header.startswith(f".TH {tool.upper()} 8 "), f"{page}: header {header!r}"


def test_every_page_belongs_to_a_tool() -> None:
    pages = {p.stem for p in (TOOLS / "man").glob("*.8")}
    assert pages == set(SCRIPTS), f"pages without a tool: {sorted(pages - set(SCRIPTS))}"


@pytest.mark.parametrize("tool", sorted(SCRIPTS))
def test_every_command_and_option_of_the_parser_is_in_the_page(tool: str) -> None:
    text = page_text(tool)
    words = set(re.findall(r"[\w.-]+", text))
    missing = []
    for path, parser in commands(build_parser(tool)):
        where = " ".join((tool, *path))
        if path and path[-1] not in words:
            missing.append(f"command {where!r}")
        for option, action in long_options(parser):
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text):
                missing.append(f"{where} {option}")
            # A range (a channel number) is described by its bounds, not listed.
            for choice in () if isinstance(action.choices, range) else action.choices or ():
                if str(choice) not in words:
                    missing.append(f"{where} {option} choice {choice!r}")
    assert not missing, f"tools/man/{tool}.8 does not document: " + "; ".join(missing)


@pytest.mark.parametrize("tool", sorted(SCRIPTS))
def test_every_option_in_the_page_exists_in_the_parser(tool: str) -> None:
    known = {option for _, parser in commands(build_parser(tool)) for option, _ in long_options(parser)}
    named = set()
    for line in page_text(tool).splitlines():
        # Options after another tool's name on a line belong to that tool, as in
        # "poolctl journal verify --file" on poold's page.
        other = min((line.find(f"{o} ") for o in SCRIPTS if o != tool and f"{o} " in line), default=len(line))
        named |= {m.group() for m in _LONG_OPTION.finditer(line) if m.start() < other}
    stale = sorted(named - known)
    assert not stale, f"tools/man/{tool}.8 names options {tool} does not have: {stale}"


def test_the_check_sees_a_missing_and_a_stale_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader finds options in the page's roff as the tests above rely on."""
    page = tmp_path / "man" / "demo.8"
    page.parent.mkdir()
    page.write_text(
        '.TH DEMO 8\n.SH SYNOPSIS\n.B demo run\n.RB [ \\-\\-fast ]\n.BI \\-\\-old " N"\n\\fB\\-\\-mode\\fR a|b\n'
    )
    monkeypatch.setattr(sys.modules[__name__], "TOOLS", tmp_path)
    text = page_text("demo")
    assert set(_LONG_OPTION.findall(text)) == {"--fast", "--old", "--mode"}
    assert {"run", "a", "b"} <= set(re.findall(r"[\w.-]+", text))


@pytest.mark.parametrize("tool", sorted(SCRIPTS))
def test_the_page_renders_without_a_warning(tool: str) -> None:
    """groff (groff-base, installed by scripts/bootstrap.sh) with every warning on."""
    groff = shutil.which("groff")
    assert groff, "groff is missing: run scripts/bootstrap.sh (Debian's groff-base)"
    run = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-z", str(TOOLS / "man" / f"{tool}.8")],
        capture_output=True,
        text=True,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert run.returncode == 0 and not run.stderr, f"groff on {tool}.8: {run.stderr}"
