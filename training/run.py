"""The start of a training run: :func:`start_run` (flags, ranks,
``--out``, seeds), :func:`open_splits` (the data) and :func:`begin_run`
(where it resumes from, its config.json)."""
import json
import math
import os
import sys

import chainer

from datasets import get_dataset, masked_only
from runtime import outdir
from runtime.device import set_seed
from runtime.errors import UsageError
from training import distributed
from training.extensions import snapshots
from training.extensions.guards import SkipBadSamples
from training.schedules import DECAYING, schedule_iterations


def check_training_flags(args):
    """UsageError for a training flag that does not apply."""
    if (args.schedule_iterations is not None and
            args.lr_schedule not in DECAYING):
        raise UsageError('--schedule-iterations applies to --lr-schedule %s '
                         'only' % ' or '.join(DECAYING))
    if getattr(args, 'keep_best', None) and not args.val_split:
        raise UsageError('--keep-best %s needs a validation split '
                         '(--val-split)' % args.keep_best)


def stop_trigger(args, default_iterations):
    """``(length, unit)`` of ``--iterations``, else ``--epochs``."""
    if args.iterations is not None:
        return args.iterations, 'iteration'
    if args.epochs is not None:
        return args.epochs, 'epoch'
    return default_iterations, 'iteration'


def start_run(args, default_iterations):
    """Check the flags, join the data-parallel run, claim ``--out`` (rank
    0) and seed every random stream (per rank); ``(device, stop)``, stop:
    the run's ``(length, unit)``."""
    stop = stop_trigger(args, default_iterations)
    check_training_flags(args)
    context = distributed.setup(args.communicator, args.seed, args.device,
                                args.rank_weights)
    # rank 0 claims; the claim itself (a lock) stays on rank 0
    context.on_writer(lambda: outdir.claim_training(
        args.out, args.force, args.resume,
        getattr(args, 'modelfile', None)) and None)
    set_seed(context.rank_seed(), context.device)
    if args.deterministic:
        chainer.global_config.train = False    # no dropout, no flips
    return context.device, stop


def open_splits(args, masks_only=False):
    """``(train, val)`` of ``--split`` and ``--val-split`` (None), in a
    :class:`SkipBadSamples` with ``--skip-bad``; ``masks_only``: their
    images with a mask."""
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
        announce = distributed.is_writer()
        train = with_masks(train, '--split', announce)
        val = (with_masks(val, '--val-split', announce)
               if val is not None else None)
    return train, val


def with_masks(dataset, what='the split', announce=False):
    """:func:`datasets.masked_only` of ``dataset`` (inside its
    :class:`SkipBadSamples`); ``announce``: say how many are kept."""
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


def begin_run(args, model, train, stop, **extra):
    """Once every input is checked, rank 0 decides for all: the snapshot
    to resume from (refused with other flags or longer than ``stop``), or
    with ``--force`` the old run moved aside; then config.json, with
    ``extra`` and the run's length in updates as run. Returns
    ``build_trainer``'s ``resumed`` and ``config``."""
    context = distributed.current()
    if args.lr_schedule in DECAYING and args.schedule_iterations is None:
        # the resolved length is written to config.json and kept on resume
        args.schedule_iterations = schedule_iterations(
            stop, len(train), args.batch_size, context.size)
    # the length as run, also where --iterations was left at its default
    extra.setdefault('iterations', schedule_iterations(
        stop, len(train), args.batch_size, context.size))
    extra.update(n_class=model.n_class, width=model.width,
                 data_dir=train.data_dir, **context.describe(args.batch_size))
    if context.distributed and context.is_writer:
        print(context.summary(args.batch_size, args.lr), flush=True)
    resumed, config = context.on_writer(_begin, args, stop, len(train), extra)
    return dict(resumed=resumed, config=config)


def _begin(args, stop, n_train, extra):
    resumed = None if args.force else snapshots.pick(args.out, args.resume)
    if resumed is not None:
        path, arrays = resumed
        config = json.loads(json.dumps(dict(vars(args), **extra), default=str))
        snapshots.changed_flags(path, arrays, config, vars(args))
        iteration = int(arrays['updater/iteration'])
        check_length(args, stop, n_train, iteration, path)
        snapshots.abandon_later(args.out, path, iteration)
    if args.force:
        outdir.claimed(args.out).start_over()
    return resumed, outdir.write_config(args.out, args, **extra)


def check_length(args, stop, n_train, iteration, path):
    """UsageError if the snapshot ``path`` has trained longer than
    ``stop`` (config.json would name a length that never trained)."""
    length, unit = stop
    if unit == 'iteration':
        done, asked = iteration, '--iterations %d' % length
    else:   # the epochs of this rank's shard, as chainer's iterator counts
        shard = math.ceil(n_train / float(distributed.current().size))
        done = iteration * args.batch_size / float(shard)
        asked = '--epochs %g' % length
    if done > length + 1e-9:
        raise UsageError(
            '%s: the run in %s has already trained %d iterations%s (%s); '
            'resuming cannot train less: pass a longer %s, or --force to '
            'start over' % (asked, args.out, iteration, '' if unit ==
                            'iteration' else ' (%.4g epochs)' % done,
                            os.path.basename(path), asked.split()[0]))
