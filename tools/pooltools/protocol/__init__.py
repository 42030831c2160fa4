"""The POOL/1 protocol (docs/protocol.md): wire codec, key schedule, handshake, packet protection
and flow control. Imports nothing from the rest of pooltools: services and the kernel binding
build on it, never the other way round."""
