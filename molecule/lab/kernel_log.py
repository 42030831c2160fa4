#!/usr/bin/env python3
"""What in a lab node's kernel log fails a run: oopses, warnings, KASAN and slab reports.

The lab boots with slub_debug=FZPU init_on_free=1 (pool_lab.SLAB_CHECKS), so memory misuse in
pool.ko is reported as "Poison overwritten", "Redzone" or a BUG line instead of passing unseen.
Every scenario's verify ends by reading each node's kernel log since the VM was first booted
(the lab's journal is persistent, so a power cycle loses nothing) through this module:

    journalctl -k -o short-monotonic --no-pager | python3 kernel_log.py NODE

prints the offending lines and exits 1, or prints nothing and exits 0; `kernel_log.py
--read-command` prints that command. Standard library only.
"""

from __future__ import annotations

import re
import sys

# The kernel's own words for a report that must never pass a run.
BAD_LINE = re.compile(r"BUG|WARNING:|Oops|general protection|KASAN|Poison overwritten|Redzone")
# A command to read a node's kernel log of every boot (journald also keeps what the ring buffer
# dropped); dmesg (this boot only) where journald has nothing.
READ_COMMAND = "journalctl -k -o short-monotonic --no-pager 2>/dev/null | grep . || dmesg"


def problems(text: str) -> list[str]:
    """The lines of a kernel log that report a bug, in order."""
    return [line for line in text.splitlines() if BAD_LINE.search(line)]


def main(argv: list[str]) -> int:
    if argv[1:] == ["--read-command"]:
        print(READ_COMMAND)
        return 0
    node = argv[1] if len(argv) > 1 else "node"
    found = problems(sys.stdin.read())
    if found:
        print(f"{node}: {len(found)} kernel report line(s):", *found[:40], sep="\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
