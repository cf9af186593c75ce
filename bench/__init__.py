"""Benchmarks run by `make bench`: webhook throughput and reply delay, on 127.0.0.1 only."""
