# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for pool.ops.kmod_package: ships the controller's module source to the
build host exactly as pool.ops.kmod's action plugin ships it to a node."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pool.ops.plugins.action.kmod import ActionModule as KmodActionModule


class ActionModule(KmodActionModule):
    """The same transfer as pool.ops.kmod's: src packed on the controller, unpacked by the module."""
