"""pool_vault: a file vault over POOL sessions (docs/vault.md)."""
