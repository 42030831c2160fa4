"""Test peers: pool_test (traffic checks and benchmarks), the reference peer written from
docs/protocol.md alone, and its bounded fuzzer."""
