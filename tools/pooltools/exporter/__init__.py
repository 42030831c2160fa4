"""pool_exporter: pool.ko's state as Prometheus metrics (docs/exporter.md)."""
