"""Benchmarks: each prints its figures, and the ratios measured side by side in one run."""
