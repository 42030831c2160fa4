"""Sphinx configuration of the pool.ops docsite (scripts/docs.sh builds it with antsibull-docs).

Made with `antsibull-docs sphinx-init`, then: no intersphinx (the build runs offline, where
CI reaches only package registries), and the few labels of Ansible's own documentation that
antsibull-docs' pages link to resolve to their published pages. Any other unresolved
reference is a warning, and warnings fail the build.
"""

from __future__ import annotations

from docutils import nodes

project = "pool.ops"
copyright = "POOL operations team"
title = "pool.ops: the POOL operations suite"
html_short_title = "pool.ops"

extensions = ["sphinx.ext.autodoc", "sphinx_antsibull_ext"]

pygments_style = "ansible"
highlight_language = "YAML+Jinja"

html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = "any"
nitpicky = True

ANSIBLE_DOCS = "https://docs.ansible.com/ansible/latest/"
ANSIBLE_LABELS = {
    "common_return_values": "reference_appendices/common_return_values.html",
    "action_plugins": "plugins/action.html",
    "ansible_configuration_settings": "reference_appendices/config.html",
}


def _ansible_label(app, env, node, contnode):
    target = node.get("reftarget")
    if node.get("reftype") != "ref" or target not in ANSIBLE_LABELS:
        return None
    ref = nodes.reference("", "", internal=False, refuri=ANSIBLE_DOCS + ANSIBLE_LABELS[target])
    ref += contnode
    return ref


def setup(app):
    app.connect("missing-reference", _ansible_label)
