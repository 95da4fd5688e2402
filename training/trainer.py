"""What every training script assembles: its training flags, its run
(device, seed, --out, data), iterators, optimizer, evaluator and Trainer,
and the run itself."""
import argparse
import sys

import chainer
import numpy as np
from chainer import training
from chainer.iterators import SerialIterator
from chainer.training import extensions

from datasets import get_dataset, masked_only, pad_examples, training_data
from datasets.augment import AUGMENTATIONS, augmentation
from models import FCN8s
from runtime import distributed, outdir
from runtime.config import check_resume_length
from runtime.device import set_seed
from runtime.errors import OutOfMemory, UsageError, WriteFailed
from runtime.flags import stop_trigger
from runtime.guards import (BadSampleCount, FiniteLoss, SkipBadSamples,
                            check_finite_params, find_wrapped)
from runtime.model_files import save_model
from runtime.progress import TrainingProgress, report_stream
from runtime.snapshots import Snapshot, list_snapshots
from runtime.triggers import StopTrigger
from training.extensions import KeepBest, PanelPlot
from training.memory import check_batch_fits
from training.mixed_precision import LossScale, loss_scale
from training.sampling import PositiveShareOrder, positive_images
from training.schedules import (DECAYING, SCHEDULES, lr_attribute,
                                lr_schedule, schedule_iterations)
from training.tensorboard import TensorBoard


def add_training_flags(p, keep_best=(), weight_decay=0.0):
    """The flags of every training script for its data (augmentation,
    positive share), optimizer (weight decay, learning-rate schedule),
    validation, kept best model and TensorBoard; ``keep_best``: the
    validation metrics the script reports, the choices of
    ``--keep-best``."""
    p.add_argument('--augment', default='none', choices=AUGMENTATIONS,
                   help='training augmentation besides the random flip '
                   '(image and mask moved together, see datasets/augment.py): '
                   'seg: random scale in [0.75, 1.25] and crop back to the '
                   'image size, colour jitter; autoaugment: an AutoAugment '
                   'policy of 8 sub-policies (posterize, solarize, equalize, '
                   'autocontrast, colour, contrast, brightness, sharpness, '
                   'rotate, translate)')
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
    p.add_argument('--schedule-iterations', type=int,
                   default=None,
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


def check_training_flags(args):
    """UsageError for a value of :func:`add_training_flags` out of range
    or that does not apply."""
    if (args.schedule_iterations is not None and
            args.lr_schedule not in DECAYING):
        raise UsageError('--schedule-iterations applies to --lr-schedule %s '
                         'only' % ' or '.join(DECAYING))
    if getattr(args, 'keep_best', None) and not args.val_split:
        raise UsageError('--keep-best %s needs a validation split '
                         '(--val-split)' % args.keep_best)


def start_run(args, default_iterations, masks_only=False):
    """The start of a training run from its flags: the flags checked, the
    data-parallel run joined (``--communicator``, see
    :mod:`runtime.distributed`), ``--out`` claimed (rank 0), the device
    picked, every random stream seeded (per rank) and the datasets opened
    (with ``masks_only`` restricted to their images with a mask, see
    :func:`datasets.masked_only`; wrapped in
    :class:`runtime.guards.SkipBadSamples` with ``--skip-bad``).

    Returns:
        ``(device, stop, train, val)``: ``stop`` is ``(length, unit)``,
        ``val`` None without ``--val-split``.
    """
    stop = stop_trigger(args, default_iterations)
    check_training_flags(args)
    context = distributed.setup(args.communicator, args.seed, args.device,
                                args.rank_weights)
    context.on_writer(outdir.claim_training, args.out, args.force,
                      args.resume, getattr(args, 'modelfile', None))
    set_seed(context.rank_seed(), context.device)
    if args.deterministic:
        chainer.global_config.train = False    # no dropout, no flips
    train = get_dataset(args.dataset, args.data_dir, args.split,
                        layout=args.voc_layout,
                        max_pixels=args.max_image_pixels,
                        skip_missing=args.skip_bad)
    val = (get_dataset(args.dataset, args.val_data_dir or args.data_dir,
                       args.val_split, train.class_names, args.voc_layout,
                       args.max_image_pixels, args.skip_bad)
           if args.val_split else None)
    if args.skip_bad:
        train = SkipBadSamples(train, 'train')
        val = SkipBadSamples(val, 'val') if val is not None else None
    if masks_only:
        train = with_masks(train, '--split', announce=context.is_writer)
        val = (with_masks(val, '--val-split', announce=context.is_writer)
               if val is not None else None)
    context.on_writer(check_resume_length, args, stop, len(train))
    if args.lr_schedule in DECAYING and args.schedule_iterations is None:
        # the resolved length is written to config.json and kept on resume
        args.schedule_iterations = schedule_iterations(
            stop, len(train), args.batch_size, context.size)
    return context.device, stop, train, val


def with_masks(dataset, what='the split', announce=False):
    """:func:`datasets.masked_only` of ``dataset``, inside its
    :class:`runtime.guards.SkipBadSamples` if it has one; ``announce``:
    say how many images are kept when some are left out."""
    skipping = isinstance(dataset, SkipBadSamples)
    inner = dataset.dataset if skipping else dataset
    kept = masked_only(inner, what)
    if kept is inner:
        return dataset
    if announce:
        print('note: %s %r: using the %d of its %d images that have a mask'
              % (what, inner.split, len(kept), len(inner)), file=sys.stderr,
              flush=True)
    return SkipBadSamples(kept, dataset.name) if skipping else kept


def train_iterator(examples, train, args):
    """Shuffled iterator over ``examples``, the training view of the raw
    split ``train`` (this rank's shard in a data-parallel run), of
    ``--batch-size``; with ``--positive-share`` each batch holds that share
    of positive images (:class:`training.sampling.PositiveShareOrder`).
    Its batches may mix image sizes (see :func:`datasets.pad_examples`)."""
    context = distributed.current()
    examples = context.scatter(examples, shuffle=True)
    if args.positive_share is None:
        return SerialIterator(examples, args.batch_size)
    # the same seed deals the flags out as it dealt the examples
    flags = context.scatter(positive_images(train), shuffle=True)
    positive = np.array([flags[i] for i in range(len(flags))], bool)
    return SerialIterator(examples, args.batch_size,
                          order_sampler=PositiveShareOrder(
                              positive, args.positive_share,
                              args.batch_size))


def training_view(train, args):
    """The training examples of the raw split ``train``: flipped at random
    and ``--augment``'ed (see :func:`datasets.training_data`)."""
    return training_data(train, flip=True,
                         augment=augmentation(args.augment))


def val_iterator(val, batch_size):
    """One pass over this rank's shard of a val split (None without one)."""
    if val is None:
        return None
    return SerialIterator(distributed.current().scatter(training_data(val)),
                          batch_size, repeat=False, shuffle=False)


def iterators(train, val, args):
    """The training iterator (:func:`train_iterator` of
    :func:`training_view`) and a one-pass val iterator over ``(x,
    label_map, labels)`` examples."""
    return (train_iterator(training_view(train, args), train, args),
            val_iterator(val, args.batch_size))


def build_trainer(updater, stop, out, report_keys, plots, evaluator=None,
                  log_interval=10, snapshot_interval=100, resume=None,
                  force=False, eval_interval=100, n_retains=2,
                  validators=(), schedule=None, keep_best=None,
                  tensorboard=False):
    """A Trainer with LogReport, PrintReport, TrainingProgress, one figure
    ``<name>.png`` per entry of ``plots`` (``{name: (title, [Panel])}``,
    see :class:`training.extensions.PanelPlot`), the learning rate,
    a stop on a non-finite loss and resumable snapshots (see
    :mod:`runtime.snapshots`: a rerun in the same ``out`` continues from
    the newest good one; ``resume`` and ``force`` as the flags, see
    :func:`trainer_options`). ``validators`` are further extensions that
    run when the evaluator does, and once before the first update: the
    log and the figures then start at iteration 0. ``schedule``: the
    keyword arguments of :func:`training.schedules.lr_schedule`;
    ``keep_best``: a validation metric, see
    :class:`training.extensions.KeepBest`; ``tensorboard``: also write the
    run for TensorBoard (:class:`training.tensorboard.TensorBoard`).

    In a data-parallel run (:mod:`runtime.distributed`) the evaluator is
    averaged over the ranks, so are the ``main/`` terms of
    ``report_keys``, and only rank 0 logs, prints, plots and writes
    snapshots."""
    context = distributed.current()
    trainer = training.Trainer(updater, StopTrigger(*stop), out=out)
    if stop[1] == 'iteration':  # short runs still log, plot and validate
        log_interval = max(1, min(log_interval, int(stop[0])))
        eval_interval = max(1, min(eval_interval, int(stop[0])))
    log = (log_interval, 'iteration')
    optimizer = updater.get_optimizer('main')
    snapshot = Snapshot(snapshot_interval, stop, n_retains, resume, force,
                        context=context if context.distributed else None)
    trainer.extend(FiniteLoss(describe_last_good=snapshot.describe_last_good))
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
    skippers = [s for s in (find_wrapped(it.dataset, SkipBadSamples)
                            for it in iterators) if s is not None]
    trainer.extend(BadSampleCount(skippers), trigger=log)
    trainer.extend(snapshot)
    if loss_scale(optimizer) is not None:
        trainer.extend(LossScale(optimizer), trigger=log)
        report_keys = list(report_keys) + ['loss_scale']
    if not context.is_writer:
        return trainer
    if keep_best:
        trainer.extend(KeepBest(optimizer.target.model, keep_best, out),
                       trigger=(eval_interval, 'iteration'))
    trainer.extend(extensions.observe_value(
        'lr', lambda _: getattr(optimizer, lr_attribute(optimizer))),
        trigger=log)
    start = bool(validators)      # an iteration-0 entry of the validators
    trainer.extend(extensions.LogReport(trigger=log),
                   call_before_training=start)
    if tensorboard:
        trainer.extend(TensorBoard())
    trainer.extend(extensions.PrintReport(
        ['epoch', 'iteration'] + list(report_keys) + ['lr', 'elapsed_time'],
        out=report_stream()))
    trainer.extend(TrainingProgress(log_interval))
    for name, (title, panels) in plots.items():
        trainer.extend(PanelPlot(panels, name + '.png', title), trigger=log,
                       call_before_training=start)
    return trainer


def trainer_options(args):
    """The keyword arguments of :func:`build_trainer` that come from the
    shared flags."""
    return dict(snapshot_interval=args.snapshot_interval,
                resume=args.resume, force=args.force,
                eval_interval=args.val_interval,
                schedule=dict(schedule=args.lr_schedule,
                              iterations=args.schedule_iterations,
                              power=args.lr_power, step=args.lr_step,
                              gamma=args.lr_gamma),
                keep_best=getattr(args, 'keep_best', None),
                tensorboard=args.tensorboard)


def run_training(trainer, model, out, next_steps=()):
    """Run the trainer and write ``out/model.npz`` (never from NaN or inf
    weights; rank 0 of a data-parallel run), then print its path and the
    command lines ``next_steps``. Errors inside the loop (a bad
    sample, a non-finite loss, an interruption) propagate as they are,
    without chainer's traceback dump, for :func:`runtime.cli.run` to
    report in one line; so do a batch that does not fit in memory (refused
    before the first step when it surely cannot) and a file that cannot
    be written (a full disk: the snapshots already written are kept)."""
    iterator = trainer.updater.get_iterator('main')
    with chainer.using_config('train', False):     # no random flip drawn
        shape = iterator.dataset[0][0].shape[-2:]
    if isinstance(model, FCN8s):
        check_batch_fits(model, shape, iterator.batch_size, model.device)
    context = distributed.current()
    try:
        trainer.run(show_loop_exception_msg=False)
        check_finite_params(model, 'model.npz not written')
        if context.rank_weights_path():
            save_model(context.rank_weights_path(), model)
        if context.is_writer:
            path = outdir.output_path(out, outdir.MODEL)
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
    """Adam (``alpha=lr``) over the parameters of ``loss``; the links in
    ``frozen`` are never updated (their parameters stay bit-identical),
    ``weight_decay`` > 0 adds a WeightDecay hook. In a data-parallel run
    it is ChainerMN's multi-node optimizer (gradients averaged over the
    ranks, rank 0's weights broadcast first)."""
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(loss)
    for link in frozen:      # after setup: it creates the update rules
        link.disable_update()
    if weight_decay:
        optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(weight_decay))
    return distributed.current().wrap_optimizer(optimizer)


def make_evaluator(val_it, loss, device, eval_func=None):
    """An Evaluator of ``loss`` (or ``eval_func``) over ``val_it``; None
    without a validation iterator."""
    if val_it is None:
        return None
    return extensions.Evaluator(val_it, loss, converter=pad_examples,
                                device=device, eval_func=eval_func)
