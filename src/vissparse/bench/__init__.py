"""Timing and paired benchmarks."""
