"""The Trainer every training script builds: logging, plots, snapshots."""
import os

from chainer import training
from chainer.training import extensions

from models import save_model


def build_trainer(updater, stop, out, report_keys, plots, evaluator=None,
                  log_interval=10, snapshot_interval=100):
    """A Trainer with LogReport, PrintReport, ProgressBar, one PlotReport
    PNG per entry of ``plots`` (``{name: [keys]}``), the learning rate and
    resumable snapshots (a rerun in the same ``out`` continues from the
    latest one)."""
    trainer = training.Trainer(updater, stop, out=out)
    log = (log_interval, 'iteration')
    optimizer = updater.get_optimizer('main')
    trainer.extend(extensions.observe_value(
        'lr', lambda _: optimizer.alpha if hasattr(optimizer, 'alpha')
        else optimizer.lr), trigger=log)
    if evaluator is not None:
        trainer.extend(evaluator, trigger=(snapshot_interval, 'iteration'))
    trainer.extend(extensions.LogReport(trigger=log))
    trainer.extend(extensions.PrintReport(
        ['epoch', 'iteration'] + list(report_keys) + ['lr', 'elapsed_time']))
    trainer.extend(extensions.ProgressBar(update_interval=log_interval))
    for name, keys in plots.items():
        trainer.extend(extensions.PlotReport(
            keys, 'iteration', trigger=log, filename=name + '.png'))
    trainer.extend(extensions.snapshot(n_retains=2, autoload=True),
                   trigger=(snapshot_interval, 'iteration'))
    return trainer


def finish(trainer, model, out):
    """Run the trainer and write ``out/model.npz``."""
    trainer.run()
    save_model(os.path.join(out, 'model.npz'), model)
