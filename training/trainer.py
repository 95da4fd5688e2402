"""What every training script assembles: its training flags, iterators,
optimizer, evaluator and Trainer, and the run itself (its start:
:mod:`training.run`)."""
import argparse
import sys

import chainer
import numpy as np
from chainer import training
from chainer.iterators import SerialIterator
from chainer.training import extensions

from datasets import pad_examples, training_data
from datasets.augment import AUGMENTATIONS, augmentation
from models import FCN8s
from models.io import save_model
from runtime.errors import OutOfMemory, WriteFailed
from runtime.files import output_path
from training import distributed
from training.extensions.best import keep_best as keep_best_model
from training.extensions.guards import (BadSampleCount, Finite,
                                        SkipBadSamples, find_wrapped)
from training.extensions.reports import (DurationNote, LogReport, PanelPlot,
                                         PrintReport)
from training.extensions.snapshots import Snapshot, list_snapshots, resume
from training.extensions.tensorboard import TensorBoard
from training.extensions.triggers import StopTrigger
from training.memory import check_batch_fits
from training.mixed_precision import LossScale, loss_scale
from training.sampling import PositiveShareOrder, positive_images
from training.schedules import SCHEDULES, lr_attribute, lr_schedule


def add_training_flags(p, keep_best=(), weight_decay=0.0):
    """The flags every training script shares; ``keep_best``: the
    choices of ``--keep-best``, validation metrics of the script."""
    p.add_argument('--augment', default='none', choices=AUGMENTATIONS,
                   help='training augmentation besides the random flip '
                   '(datasets/augment.py): seg: random scale in [0.75, 1.25], '
                   'crop, colour jitter; autoaugment: an AutoAugment policy')
    p.add_argument('--positive-share', type=float, default=None,
                   help='share of positive images (with a foreground class) '
                   'in every training batch, in [0, 1]; the rarer kind is '
                   'repeated, the other subsampled (default: batches drawn '
                   'uniformly)')
    p.add_argument('--weight-decay', type=float, default=weight_decay,
                   help='L2 weight decay: rate x weight added to the '
                   'gradient of every trained parameter')
    p.add_argument('--lr-schedule', default='constant', choices=SCHEDULES,
                   help='learning rate after t updates: constant; poly: '
                   'lr (1 - t/T)^power; step: lr gamma^floor(t/step); '
                   'cosine: lr (1 + cos(pi t/T)) / 2; T is '
                   '--schedule-iterations')
    p.add_argument('--lr-power', type=float, default=0.9,
                   help='power of --lr-schedule poly')
    p.add_argument('--lr-step', type=int, default=100,
                   help='updates between the decays of --lr-schedule step')
    p.add_argument('--lr-gamma', type=float, default=0.1,
                   help='factor of each decay of --lr-schedule step, in '
                   '(0, 1]')
    p.add_argument('--schedule-iterations', type=int, default=None,
                   help='T of --lr-schedule poly and cosine, which reach 0 '
                   'there (default: the run\'s length in updates, from '
                   '--iterations or --epochs; a resume for longer must '
                   'pass the run\'s value, in its config.json)')
    p.add_argument('--val-interval', type=int, default=100,
                   help='updates between validations on --val-split')
    if keep_best:
        p.add_argument('--keep-best', default=None, choices=keep_best,
                       metavar='METRIC',
                       help='write OUT/model_best.npz each time the '
                       'validation METRIC (%s; higher is better) beats every '
                       'earlier value' % ', '.join(keep_best))
    p.add_argument('--tensorboard', default=True,
                   action=argparse.BooleanOptionalAction,
                   help='write TensorBoard event files to OUT/tensorboard: '
                   'every logged value, the config, the attention pictures '
                   '(tensorboard --logdir runs)')


def train_iterator(examples, train, args):
    """Shuffled iterator over this rank's shard of ``examples``, the
    training view of the raw split ``train``; ``--positive-share``: each
    batch holds that share of positive images."""
    context = distributed.current()
    examples = context.scatter(examples, shuffle=True)
    if args.positive_share is None:
        return SerialIterator(examples, args.batch_size)
    # the same seed deals the flags out as it dealt the examples
    flags = context.scatter(positive_images(train), shuffle=True)
    positive = np.array([flags[i] for i in range(len(flags))], bool)
    return SerialIterator(examples, args.batch_size,
                          order_sampler=PositiveShareOrder(
                              positive, args.positive_share, args.batch_size))


def training_view(train, args):
    """The raw split ``train`` flipped at random and ``--augment``'ed."""
    return training_data(train, flip=True, augment=augmentation(args.augment))


def val_iterator(val, batch_size):
    """One pass over this rank's shard of a val split (None without one)."""
    if val is None:
        return None
    return SerialIterator(distributed.current().scatter(training_data(val)),
                          batch_size, repeat=False, shuffle=False)


def iterators(train, val, args):
    """The training iterator and a one-pass val iterator."""
    return (train_iterator(training_view(train, args), train, args),
            val_iterator(val, args.batch_size))


def build_trainer(updater, stop, out, report_keys, plots, evaluator=None,
                  log_interval=10, snapshot_interval=100, eval_interval=100,
                  validators=(), schedule=None, keep_best=None,
                  tensorboard=False, resumed=None, config=None, n_retains=2):
    """A Trainer with its guards, snapshots (``config`` and ``resumed``:
    :func:`training.run.begin_run`'s), evaluator, ``validators`` (also
    before the first update), learning-rate ``schedule``
    (:func:`training.schedules.lr_schedule`'s keywords), ``keep_best`` and
    reports. In a data-parallel run the evaluator and the ``main/`` terms
    are averaged over the ranks, and only rank 0 reports and writes."""
    context = distributed.current()
    trainer = training.Trainer(updater, StopTrigger(*stop), out=out)
    if stop[1] == 'iteration':  # short runs still log, plot and validate
        log_interval = max(1, min(log_interval, int(stop[0])))
        eval_interval = max(1, min(eval_interval, int(stop[0])))
    optimizer = updater.get_optimizer('main')
    parallel = context if context.distributed else None
    trainer.extend(Finite())
    context.aggregate(trainer, [k for k in report_keys
                                if k.startswith('main/')])
    iterators = [updater.get_iterator('main')]
    if evaluator is not None:
        trainer.extend(context.wrap_evaluator(evaluator),
                       trigger=(eval_interval, 'iteration'))
        iterators.append(evaluator.get_iterator('main'))
    for validator in validators:
        trainer.extend(validator, trigger=(eval_interval, 'iteration'),
                       call_before_training=True)
    shift = lr_schedule(optimizer, **schedule) if schedule else None
    if shift is not None:
        trainer.extend(shift, trigger=(1, 'iteration'))
    trainer.extend(BadSampleCount([s for s in (
        find_wrapped(it.dataset, SkipBadSamples) for it in iterators)
        if s is not None]), trigger=(log_interval, 'iteration'))
    trainer.extend(Snapshot(snapshot_interval, stop, n_retains, config,
                            parallel))
    if loss_scale(optimizer) is not None:
        trainer.extend(LossScale(optimizer), trigger=(log_interval,
                                                      'iteration'))
        report_keys = list(report_keys) + ['loss_scale']
    if context.is_writer:
        if keep_best:
            keep_best_model(trainer, optimizer.target.model, keep_best,
                            eval_interval)
        add_reports(trainer, report_keys, plots, log_interval,
                    bool(validators), config if tensorboard else None)
        trainer.extend(DurationNote(stop))
    if resumed is not None:
        resume(trainer, resumed, parallel)
    return trainer


def add_reports(trainer, report_keys, plots, log_interval, at_start,
                tensorboard_config=None):
    """The learning rate, the log (``OUT/log``) printed (a progress bar on
    a terminal), a figure ``<name>.png`` per entry of ``plots`` ``{name:
    (title, [Panel])}`` and TensorBoard (given its config); ``at_start``:
    the log and the figures start before the first update."""
    log = (log_interval, 'iteration')
    optimizer = trainer.updater.get_optimizer('main')
    trainer.extend(extensions.observe_value(
        'lr', lambda _: getattr(optimizer, lr_attribute(optimizer))),
        trigger=log)
    trainer.extend(LogReport(log), call_before_training=at_start)
    if tensorboard_config is not None:
        trainer.extend(TensorBoard(tensorboard_config))
    trainer.extend(PrintReport(
        ['epoch', 'iteration'] + list(report_keys) + ['lr', 'elapsed_time']))
    if sys.stdout.isatty():
        trainer.extend(extensions.ProgressBar(update_interval=log_interval))
    for name, (title, panels) in plots.items():
        trainer.extend(PanelPlot(panels, name + '.png', title), trigger=log,
                       call_before_training=at_start)


def trainer_options(args, begun):
    """:func:`build_trainer`'s keywords from the shared flags and
    :func:`training.run.begin_run` (``begun``)."""
    return dict(snapshot_interval=args.snapshot_interval,
                eval_interval=args.val_interval,
                schedule=dict(schedule=args.lr_schedule,
                              iterations=args.schedule_iterations,
                              power=args.lr_power, step=args.lr_step,
                              gamma=args.lr_gamma),
                keep_best=getattr(args, 'keep_best', None),
                tensorboard=args.tensorboard, **begun)


def run_training(trainer, model, out, next_steps=()):
    """Run the trainer, write ``out/model.npz`` (rank 0), print its path
    and the commands ``next_steps``; what stops it is raised without
    chainer's traceback, for :func:`runtime.cli.run` to say in one line."""
    iterator = trainer.updater.get_iterator('main')
    with chainer.using_config('train', False):     # no random flip drawn
        shape = iterator.dataset[0][0].shape[-2:]
    if isinstance(model, FCN8s):
        check_batch_fits(model, shape, iterator.batch_size, model.device)
    context = distributed.current()
    try:
        trainer.run(show_loop_exception_msg=False)
        if context.rank_weights_path():
            save_model(context.rank_weights_path(), model)
        if context.is_writer:
            path = output_path(out, 'model.npz')
            save_model(path, model)
            print('\nmodel: %s' % path)
            for command in next_steps:
                print('next: %s' % command)
    except MemoryError:
        raise OutOfMemory(
            'out of memory in a training step on images of %s with '
            '--batch-size %d; use a smaller --batch-size'
            % ('x'.join(map(str, shape)), iterator.batch_size))
    except OSError as e:
        found = list_snapshots(out)
        raise WriteFailed(
            'cannot write %s (%s) at iteration %d; training stopped; %s'
            % (e.filename or 'a file of the run', e.strerror or e,
               trainer.updater.iteration,
               'the snapshots written before are kept (newest: %s), '
               'rerun the same command to resume from it' % found[-1][1]
               if found else 'no snapshot was written yet'))


def make_optimizer(loss, lr, frozen=(), weight_decay=0):
    """Adam (``alpha=lr``) over ``loss``'s parameters but those of the
    links in ``frozen``, with ``weight_decay``; ChainerMN's multi-node
    optimizer in a data-parallel run."""
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(loss)
    for link in frozen:      # after setup: it creates the update rules
        link.disable_update()
    if weight_decay:
        optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(weight_decay))
    return distributed.current().wrap_optimizer(optimizer)


def make_evaluator(val_it, loss, device, eval_func=None):
    """An Evaluator of ``loss`` (or ``eval_func``) over ``val_it``."""
    if val_it is None:
        return None
    return extensions.Evaluator(val_it, loss, converter=pad_examples,
                                device=device, eval_func=eval_func)
