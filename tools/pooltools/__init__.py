"""POOL/1 tools: wire codec, key schedule, reference peer and CLIs for pool.ko."""

__version__ = "0.1.0"
