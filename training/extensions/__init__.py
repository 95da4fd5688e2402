"""Trainer extensions: everything that runs at the iterations of a
training run (guards, snapshots, validation, the best model, the log,
figures and pictures, TensorBoard, triggers)."""
