# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for pool.ops.config: checks the arguments and the configuration document on the
controller, with the module's own specification (plugins/module_utils/config_doc.py), so that a
wrong type, a missing field or a value pool.ko refuses fails before any node is touched, naming
the field; then runs the module on the node."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.pool.ops.plugins.module_utils import config_doc


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        try:
            _validation, params = self.validate_argument_spec(
                argument_spec=config_doc.ARGUMENT_SPEC,
                mutually_exclusive=config_doc.MUTUALLY_EXCLUSIVE,
                required_if=config_doc.REQUIRED_IF,
            )
        except AnsibleActionFail as exc:
            result.update(failed=True, msg="pool.ops.config: %s" % exc.message)
            return result
        found = config_doc.problems(params)
        if found:
            result.update(failed=True, msg="; ".join(found), problems=found)
            return result
        result.update(
            self._execute_module(module_name="pool.ops.config", task_vars=task_vars, wrap_async=self._task.async_val)
        )
        if not self._task.async_val:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
