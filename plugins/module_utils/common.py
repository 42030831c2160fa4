# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers every pool.ops module may share: running commands, writing files.

:func:`run` runs a command and turns a failure into one :class:`CommandError`
whose message names the command, its exit status, the last line it printed and,
when the caller knows it, the fix. Modules catch CommandError at the top, undo
what they started and call ``fail_json(msg=str(err))``.

:func:`atomic_write` writes a file the way the project requires: temporary file
in the same folder (created with its final mode before any byte is written),
fsync, rename, fsync of the folder.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import tempfile

C_LOCALE = {"LC_ALL": "C", "LANG": "C"}


class CommandError(Exception):
    """A command failed; ``str()`` is one line for ``fail_json(msg=...)``."""

    def __init__(self, msg, rc=None, stdout="", stderr=""):
        super(CommandError, self).__init__(msg)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


def last_line(text):
    """The last non-empty line of ``text`` (stripped), or ``""``."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run(module, argv, what=None, fix=None, check=True, data=None, env=None):
    """Run ``argv`` (a list, never a shell string) in the C locale.

    Returns ``(rc, stdout, stderr)``. With ``check`` (the default) a non-zero
    exit raises CommandError: "<what> failed (exit N): <last line>[: <fix>]".
    ``data`` is fed on stdin; it is never part of the message.
    """
    environ = dict(C_LOCALE)
    if env:
        environ.update(env)
    rc, out, err = module.run_command([str(a) for a in argv], data=data, environ_update=environ)
    if check and rc != 0:
        why = last_line(err) or last_line(out) or "no error message"
        msg = "%s failed (exit %d): %s" % (what or " ".join(str(a) for a in argv), rc, why)
        if fix:
            msg += ": " + fix
        raise CommandError(msg, rc=rc, stdout=out, stderr=err)
    return rc, out, err


def read_file(path, default=None, binary=False):
    """Contents of ``path``, or ``default`` when it does not exist or is unreadable."""
    try:
        with open(path, "rb" if binary else "r") as f:
            return f.read()
    except (IOError, OSError):
        return default


def atomic_write(path, content, mode=0o644):
    """Write ``content`` (str or bytes) to ``path`` atomically with ``mode``.

    The temporary file is created with ``mode`` before any byte is written, so
    secrets never exist with wider permissions, not even for a moment.
    """
    if not isinstance(content, bytes):
        content = content.encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def correct_attributes(path, mode, owner, check=False):
    """Set the permission bits ``mode`` and the ``owner`` (uid, gid) of ``path`` where they differ
    (not in ``check`` mode); returns what differed as [(what, before, after)], "mode" as 0640
    and "owner" as uid:gid."""
    st = os.stat(path)
    drifts = []
    if st.st_mode & 0o7777 != mode:
        drifts.append(("mode", "%04o" % (st.st_mode & 0o7777), "%04o" % mode))
        if not check:
            os.chmod(path, mode)
    if (st.st_uid, st.st_gid) != tuple(owner):
        drifts.append(("owner", "%d:%d" % (st.st_uid, st.st_gid), "%d:%d" % tuple(owner)))
        if not check:
            os.chown(path, *owner)
    return drifts


def remove_file(path):
    """Remove ``path`` if it exists; True when something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
