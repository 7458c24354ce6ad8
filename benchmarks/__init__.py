"""edge-search benchmarks: `python -m benchmarks [--quick]`."""
