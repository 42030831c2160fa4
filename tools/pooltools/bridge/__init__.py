"""pool_bridge: TCP connections carried over POOL sessions (docs/bridge.md)."""
