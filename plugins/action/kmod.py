# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for pool.ops.kmod: ship the controller's module source to the node.

With ``remote_src: false`` (the default) the source folder ``src`` is read on
the controller with the same file filter the module hashes with
(``module_utils.dkms.source_files``), packed into a deterministic tar archive,
copied to the task's remote temporary directory and handed to the module as
``src`` with ``remote_src: true``. The archive is removed with that directory.
The content version is computed on the node, so nothing else crosses over.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import os
import tempfile

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.pool.ops.plugins.module_utils import dkms


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        if task_vars is None:
            task_vars = dict()
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp

        args = dict(self._task.args)
        src = args.get("src")
        remote_src = boolean(args.get("remote_src", False), strict=False)
        if args.get("state", "present") == "absent" or src is None or remote_src:
            result.update(self._execute_module(module_args=args, task_vars=task_vars))
            return result

        local_tar = None
        try:
            try:
                local = self._find_needle("files", src)
            except AnsibleError as exc:
                return dict(result, failed=True, msg="src %s not found on the controller: %s" % (src, to_text(exc)))
            if not os.path.isdir(local):
                return dict(
                    result,
                    failed=True,
                    msg="src %s is not a folder on the controller: point it at the kmod/ source folder" % local,
                )
            try:
                contents = dkms.read_tree(local)
            except OSError as exc:
                return dict(result, failed=True, msg="cannot read src %s on the controller: %s" % (local, exc))
            if not contents:
                return dict(result, failed=True, msg="src %s holds no source files: point it at kmod/" % local)

            fd, local_tar = tempfile.mkstemp(prefix="pool-kmod-src-", suffix=".tar")
            with os.fdopen(fd, "wb") as f:
                dkms.write_tar(contents, f)

            tmpdir = self._connection._shell.tmpdir
            if tmpdir is None:
                tmpdir = self._make_tmp_path()
            remote_tar = self._connection._shell.join_path(tmpdir, "pool-kmod-src.tar")
            self._transfer_file(local_tar, remote_tar)
            self._fixup_perms2((tmpdir, remote_tar))

            args.update(src=remote_tar, remote_src=True)
            result.update(self._execute_module(module_args=args, task_vars=task_vars))
            return result
        finally:
            if local_tar:
                with contextlib.suppress(OSError):
                    os.unlink(local_tar)
            self._remove_tmp_path(self._connection._shell.tmpdir)
