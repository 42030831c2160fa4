"""The binding to pool.ko: the ioctl ABI (uapi), /dev/pool and session fds (device), an in-memory
fake of them for unit tests, the journal chain and JSON views of kernel objects."""
