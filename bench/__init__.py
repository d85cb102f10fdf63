"""Benchmarks: this API against bare sd.cpp binaries on the same work (`just bench`)."""
