"""poolctl: the command line door to pool.ko."""
