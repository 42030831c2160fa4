# -*- coding: utf-8 -*-
# Copyright: (c) 2026, POOL operations team
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``pool.ops.endpoint_at``: a node's POOL endpoint as seen from one peer.

A node listens on one port (its ``pool_node_endpoint`` names it) but a peer reaches it at the
address of the link they share. The roles' templates (``pool.conf``, the configuration
document) both need that endpoint: it is written once, here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text


def endpoint_at(endpoint, address=None):
    """``host:port`` (or ``[v6]:port``) with ``host`` replaced by ``address``; unchanged when
    ``address`` is empty. IPv6 addresses get their brackets."""
    endpoint = to_text(endpoint if endpoint is not None else "").strip()
    address = to_text(address if address is not None else "").strip()
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AnsibleFilterError(
            "endpoint_at: %r is not an endpoint HOST:PORT (or [IPv6]:PORT) with a port from 1 "
            "to 65535: fix pool_node_endpoint" % endpoint
        )
    if not address:
        return endpoint
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not address or any(c.isspace() for c in address) or "[" in address or "]" in address:
        raise AnsibleFilterError("endpoint_at: %r is not a host name or address: fix the peer's address" % address)
    return "%s:%s" % (("[%s]" % address) if ":" in address else address, port)


class FilterModule(object):
    def filters(self):
        return {"endpoint_at": endpoint_at}
