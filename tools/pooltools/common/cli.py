"""Command-line parsing shared by the node's programs: one-line usage errors, exit status 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

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
