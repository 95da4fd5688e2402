"""What the training and evaluation scripts share."""
import chainer_compat  # NOQA: before chainer (Python 3.12)
