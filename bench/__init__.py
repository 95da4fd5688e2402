"""Benchmarks of the training steps and inference paths (``make bench``)."""
