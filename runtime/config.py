"""The ``config.json`` of a run: its full configuration, and the checks
that a resumed run keeps the flags that shape the training and goes on
from where it stopped (never shorter)."""
import json
import math
import os
import platform
import subprocess
import sys

import chainer
import numpy as np

from runtime import distributed, outdir
from runtime.errors import UsageError
from runtime.files import atomic_write
from runtime.snapshots import list_snapshots, resume_point

# Flags that may differ when a run is resumed: how long it goes on, where
# it runs and how often it saves. Every other one shapes the training.
RESUMABLE = ('iterations', 'epochs', 'resume', 'force', 'device',
             'snapshot_interval', 'skip_bad', 'attention_interval',
             'communicator', 'rank_weights', 'val_interval', 'tensorboard',
             'max_image_pixels')


def write_config(out, args, **extra):
    """Write the run's full configuration to ``out/config.json`` (rank 0
    of a data-parallel run, which also prints and records the effective
    batch size)."""
    context = distributed.current()
    if context.distributed:
        extra.update(context.describe(args.batch_size))
        if context.is_writer:
            print(context.summary(args.batch_size, args.lr), flush=True)
    return context.on_writer(_write_config, out, args, **extra)


def _write_config(out, args, **extra):
    config = dict(vars(args))
    config.update(extra)
    config['command'] = ' '.join([os.path.basename(sys.argv[0])] +
                                 sys.argv[1:])
    config['versions'] = dict(python=platform.python_version(),
                              chainer=chainer.__version__,
                              numpy=np.__version__)
    try:
        config['git_commit'] = subprocess.run(
            ['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        pass
    with atomic_write(outdir.output_path(out, 'config.json')) as f:
        json.dump(config, f, indent=2, sort_keys=True, default=str)
    return config


def write_run_config(args, model, train, **extra):
    """``write_config`` with the architecture and the data of a training
    run, once every input is checked: a resume whose training flags differ
    from the run's config.json is refused (UsageError naming them); with
    ``--force`` the old run is moved aside now (:mod:`runtime.outdir`)."""
    extra.update(n_class=model.n_class, width=model.width,
                 data_dir=train.data_dir)
    distributed.current().on_writer(_begin_run, args, extra)
    return write_config(args.out, args, **extra)


def _begin_run(args, extra):
    if args.force:
        claim = outdir.claimed(args.out)
        if claim is not None:
            claim.start_over()
    elif args.resume is not None or list_snapshots(args.out):
        changed = changed_flags(args.out, args, extra)
        if changed:
            raise UsageError(
                '--out %s holds a run trained with other flags: %s; '
                'resuming it would mix two runs: rerun with the flags of its '
                'config.json, or pass --force to start over'
                % (args.out, ', '.join(changed)))


def check_resume_length(args, stop, n_train):
    """UsageError if the snapshot a run would resume from (``--resume``,
    or found in ``--out`` without ``--force``) has done more than the run's
    length ``stop`` (``(length, unit)``, over ``n_train`` training
    examples): it would train nothing, and config.json would name a length
    that never trained. Checked before config.json is written."""
    if args.force:
        return
    point = resume_point(args.out, args.resume)
    if point is None:
        return
    iteration, path = point
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


def _short(value):
    if isinstance(value, str):
        return value
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + '...'


def changed_flags(out, args, extra):
    """``--flag NEW (was OLD)`` for each flag of ``args`` and entry of
    ``extra`` that shapes the training (not in :data:`RESUMABLE`) and
    differs from ``out/config.json``; [] without a readable one."""
    try:
        with open(os.path.join(out, 'config.json')) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict):
        return []
    new = json.loads(json.dumps(dict(vars(args), **extra), default=str))
    changed = []
    for key in sorted(set(new) & set(old) - set(RESUMABLE)):
        a, b = old[key], new[key]
        if a == b or (isinstance(a, str) and isinstance(b, str) and
                      os.path.realpath(a) == os.path.realpath(b)):
            continue
        name = '--' + key.replace('_', '-') if key in vars(args) else key
        changed.append('%s %s (was %s)' % (name, _short(b), _short(a)))
    return changed
