"""Trainer extensions: everything that runs at the iterations of a
training run."""
