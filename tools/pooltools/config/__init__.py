"""The node configuration: pool.conf (read by poold) and configuration versions with
commit-confirmed rollback (poolctl config, poold's restore at boot)."""
