"""What the training and evaluation scripts share."""
