"""pool_relay: reaching a peer through another node, with reciprocity (docs/relay.md)."""
