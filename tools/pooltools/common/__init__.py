"""What every program on a node uses: atomic file writes, the node key file, sd_notify and
command-line parsing with one-line errors."""
