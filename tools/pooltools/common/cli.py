"""Command-line parsing shared by the node's programs: one-line usage errors, exit status 2."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from pooltools.kernel.device import EXIT_USAGE, PoolError
from pooltools.protocol.keys import decode_key


class UsageError(PoolError):
    def __init__(self, what: str, why: str) -> None:
        super().__init__(what, why, EXIT_USAGE)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors ("poolctl: usage: ...") and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError("usage", f"{message} (see {self.prog} --help)")


def parse_key(text: str, what: str) -> bytes:
    """A base64 public key given on the command line; a usage error naming `what` otherwise."""
    try:
        return decode_key(text)
    except ValueError as exc:
        raise UsageError(what, str(exc)) from None


# ---- argument types shared by the services' CLIs


def size_arg(text: str) -> int:
    """A byte count: a number, optionally followed by K, M, G or T (powers of 1024)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        value = int(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (a number, optionally K, M, G or T)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a size cannot be negative")
    return value * units[unit]


def positive_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# ---- output: one JSON document with --json, a line for people otherwise


def emit(args: argparse.Namespace, doc: Any, human: str) -> None:
    print(json.dumps(doc, sort_keys=True) if args.json else human, flush=True)


def fail(prog: str, args: argparse.Namespace, what: str, why: str, code: int, error: str | None = None) -> int:
    if getattr(args, "json", False):
        doc = {"what": what, "why": why, "exit_code": code} | ({"code": error} if error else {})
        print(json.dumps({"error": doc}), flush=True)
    print(f"{prog}: {what}: {why}", file=sys.stderr)
    return code


def locked_beside(path: Path) -> Any:
    """An exclusive lock on PATH.lock, so that two writers of the file never lose one another."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return os.fdopen(fd)
