"""poold: keeps a node's POOL state in pool.ko."""
