"""Benchmarks of training, the input pipeline and inference, measured side by side."""
