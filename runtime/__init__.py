"""How the scripts run: flags, devices, seeds, ``--out``, configs,
snapshots, model files, guards, data-parallel runs, progress and one-line
errors."""
import chainer_compat  # NOQA: before chainer (Python 3.12)
