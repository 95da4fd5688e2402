"""Data-parallel training on ChainerMN (``--communicator NAME``).

Launched as ``mpiexec -n K python train_*.py --communicator naive ...``,
every rank runs the same script; :func:`training.cli.prepare` calls
:func:`setup`, and the shared plumbing (``cli``, ``trainer``, ``snapshots``)
asks :func:`current` for the run's :class:`Context`, so the scripts
themselves hardly change. Without ``--communicator`` the context is a single
process and every hook below is the identity: chainermn and mpi4py are
never imported.

What a data-parallel run does:

* every rank holds a shard of the training split (``scatter_dataset``,
  shuffled with ``--seed``, equal lengths); its iterator yields
  ``--batch-size`` images per step, so a step (an iteration of
  ``--iterations``) takes ``batch-size x ranks`` images, and an epoch is
  still one pass over the split;
* rank 0's initial weights are broadcast, gradients are averaged over the
  ranks (``create_multi_node_optimizer``), so the weights stay identical;
  ``--lr`` is used as given (not scaled with the ranks);
* the numpy/random streams (shuffle, flips, CPU dropout) are per rank:
  rank 0 uses ``--seed`` (as a one-process run does), rank r a seed drawn
  from ``(seed, r)``;
* validation runs on shards of the val split and is averaged
  (``create_multi_node_evaluator``); the training loss terms in the log are
  averaged over the ranks too;
* only rank 0 writes to ``--out`` (config, log, plots, snapshots,
  model.npz); its decisions there (a finished run, ``--force``, which
  snapshot to resume) are broadcast, so every rank fails or goes on alike;
* on resume rank 0 reads its snapshot and broadcasts it: every rank loads
  the same weights, optimizer state, iteration and iterator position
  (no shared file system needed); ranks other than 0 then reseed their
  streams from ``(seed, rank, iteration)``, so a resumed multi-rank run does
  not retrace the uninterrupted one draw for draw. Resume with the same
  number of ranks (the iterator state of another count does not fit).
"""
import pickle
import re
import sys

import numpy as np
from chainer import backend
from chainer.training import extension

COMMUNICATORS = ('naive', 'flat', 'non_cuda_aware', 'pure_nccl')
INSTALL = ('apt-get install openmpi-bin libopenmpi-dev && '
           'pip install -r requirements-mpi.txt')


class Context(object):
    """Where this process stands in the run: ``comm`` is the ChainerMN
    communicator, or None for a one-process run."""

    def __init__(self, comm=None, seed=0, rank_weights=None):
        self.comm = comm
        self.seed = seed
        self.rank_weights = rank_weights
        self.device = None        # set by cli.prepare

    @property
    def distributed(self):
        return self.comm is not None

    @property
    def rank(self):
        return self.comm.rank if self.comm else 0

    @property
    def size(self):
        return self.comm.size if self.comm else 1

    @property
    def is_writer(self):
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    # -- setup ---------------------------------------------------------------
    def device_spec(self, spec):
        """``--device`` of this rank: a GPU spec ``N`` (or ``@cupy:N``)
        names the node's first GPU, rank ``intra_rank`` takes GPU
        ``N + intra_rank``; CPU specs are left as they are."""
        if not self.comm:
            return spec
        m = re.match(r'^(@cupy:|cuda:)?(\d+)$', str(spec).strip())
        if not m:
            return spec
        return '%s%d' % (m.group(1) or '', int(m.group(2)) +
                         self.comm.intra_rank)

    def rank_seed(self, *more):
        """``--seed`` on rank 0; on rank r a seed drawn from
        ``(seed, r, *more)``."""
        if self.rank == 0 and not more:
            return self.seed
        return int(np.random.SeedSequence(
            [self.seed, self.rank] + [int(m) for m in more]
        ).generate_state(1)[0])

    def on_writer(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` run by rank 0 only; its result, or its
        exception, is broadcast and returned, or raised, on every rank
        (marked ``every_rank``: the ranks fail together, one reports)."""
        if not self.comm or self.size == 1:
            return fn(*args, **kwargs)
        if self.is_writer:
            try:
                result = ('ok', fn(*args, **kwargs))
            except Exception as e:
                e.every_rank = True
                self.comm.bcast_obj(('error', _picklable(e)))
                raise
            self.comm.bcast_obj(result)
            return result[1]
        kind, value = self.comm.bcast_obj(None)
        if kind == 'error':
            value.every_rank = True
            raise value
        return value

    # -- the pieces of a trainer ---------------------------------------------
    def scatter(self, dataset, shuffle=False):
        """This rank's shard of ``dataset`` (all shards of equal length);
        ``shuffle``: the examples are dealt out in an order drawn from the
        seed."""
        if not self.comm:
            return dataset
        import chainermn
        return chainermn.scatter_dataset(dataset, self.comm, shuffle=shuffle,
                                         seed=self.seed)

    def wrap_optimizer(self, optimizer):
        """The multi-node optimizer of a set-up ``optimizer``: rank 0's
        weights are broadcast now, every update averages the gradients."""
        if not self.comm:
            return optimizer
        import chainermn
        multi = chainermn.create_multi_node_optimizer(optimizer, self.comm)
        self.comm.bcast_data(optimizer.target)
        # chainermn broadcasts (and skips the update) on the first step that
        # sees a new set of parameters; they were just broadcast, so record
        # the set: step 1 then averages and applies its gradients like any
        # other, and K ranks take the same steps as one process.
        multi.is_changed(optimizer.target)
        return multi

    def wrap_evaluator(self, evaluator):
        """An Evaluator over this rank's val shard whose results are
        averaged over the ranks."""
        if not self.comm or evaluator is None:
            return evaluator
        import chainermn
        return chainermn.create_multi_node_evaluator(evaluator, self.comm)

    def aggregate(self, trainer, keys):
        """Every iteration, replace the observed ``keys`` (training loss
        terms, reported on every rank and step) by their mean over the
        ranks, before LogReport reads them."""
        if self.comm and self.size > 1 and keys:
            trainer.extend(_MeanOverRanks(self.comm, keys))

    def any_signal(self, signum):
        """A signal number received by any rank (or None), so that every
        rank stops after the same iteration."""
        if not self.comm or self.size == 1:
            return signum
        from mpi4py import MPI
        got = self.comm.mpi_comm.allreduce(int(signum or 0), op=MPI.MAX)
        return got or None

    def resume(self, trainer, load):
        """Rank 0 runs ``load(trainer)`` (picks, checks and loads its
        snapshot, returns its arrays or None); every other rank loads the
        same arrays, then reseeds its streams."""
        if not self.comm or self.size == 1:
            return load(trainer)
        arrays = self.on_writer(load, trainer)
        if arrays is None:
            return None
        if not self.is_writer:
            from chainer.serializers import npz
            npz.NpzDeserializer(arrays).load(trainer)
            from training.cli import set_seed
            set_seed(self.rank_seed(trainer.updater.iteration), self.device)
        return arrays

    def dump_weights(self, model):
        """With the hidden ``--rank-weights DIR``, every rank writes its
        final weights to ``DIR/rank<N>.npz`` (for tests)."""
        if not self.rank_weights:
            return
        import os
        from models import save_model
        os.makedirs(self.rank_weights, exist_ok=True)
        save_model(os.path.join(self.rank_weights, 'rank%d.npz' % self.rank),
                   model)

    def describe(self, args):
        """Config entries of a data-parallel run (empty otherwise)."""
        if not self.comm:
            return {}
        return dict(ranks=self.size,
                    effective_batch_size=args.batch_size * self.size)

    def summary(self, args):
        return ('data-parallel: %d ranks (%s communicator) x batch size %d '
                '= effective batch size %d; learning rate %g (as given, not '
                'scaled with the ranks)'
                % (self.size, args.communicator, args.batch_size,
                   args.batch_size * self.size, args.lr))

    def abort(self, status):
        """End every rank now (a failure on one rank: the others would
        wait for it in their next collective call)."""
        if self.comm and self.size > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.mpi_comm.Abort(int(status))


class _MeanOverRanks(extension.Extension):
    """Replaces the observed values of ``keys`` by their mean over the ranks
    (one allreduce of all of them per iteration).

    chainermn's ObservationAggregator would do it key by key, but in chainer
    7.8.1 it moves Variables to the ChainerX device ``native`` and fails
    without ChainerX (not built by default from chainer's sdist). Every
    rank must report every key at every step (the loss terms do).
    """
    trigger = 1, 'iteration'
    priority = extension.PRIORITY_EDITOR       # before LogReport reads them
    name = 'mean_over_ranks'

    def __init__(self, comm, keys):
        self.comm = comm
        self.keys = list(keys)

    def __call__(self, trainer):
        from mpi4py import MPI
        observation = trainer.observation
        keys = [k for k in self.keys if k in observation]
        if not keys:
            return
        local = np.array([float(backend.CpuDevice().send(
            getattr(observation[k], 'array', observation[k])))
            for k in keys])
        total = np.empty_like(local)
        self.comm.mpi_comm.Allreduce(local, total, op=MPI.SUM)
        for k, v in zip(keys, total / self.comm.size):
            observation[k] = float(v)


def _picklable(e):
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError('%s: %s' % (type(e).__name__, e))


_current = Context()


def current():
    """The context of the running script (a one-process one until
    :func:`setup`)."""
    return _current


def is_writer():
    """Whether this process writes the run's files (rank 0, or the only
    process)."""
    return _current.is_writer


def setup(args):
    """The context of a training run from its flags (``--communicator``,
    ``--seed``, ``--rank-weights``), made current. With a communicator it
    needs mpi4py and an MPI; without them the error says what to install."""
    global _current
    name = getattr(args, 'communicator', None)
    rank_weights = getattr(args, 'rank_weights', None)
    if not name:
        _current = Context(seed=args.seed, rank_weights=rank_weights)
        return _current
    from training.cli import UsageError
    if name not in COMMUNICATORS:
        raise UsageError('--communicator must be one of %s, got %r'
                         % (', '.join(COMMUNICATORS), name))
    if name == 'pure_nccl' and _is_cpu(args.device):
        raise UsageError('--communicator pure_nccl needs GPUs (e.g. '
                         '--device 0); use --communicator naive on CPU')
    try:
        import mpi4py.MPI  # NOQA: loads the MPI library
    except (ImportError, OSError, RuntimeError) as e:
        raise UsageError('--communicator needs mpi4py and an MPI (%s): %s'
                         % (_first_line(e), INSTALL))
    import chainermn
    try:
        comm = chainermn.create_communicator(name)
    except Exception as e:
        raise UsageError('--communicator %s: %s' % (name, _first_line(e)))
    if comm.size > 1:
        # An uncaught exception on one rank aborts the job instead of
        # leaving the others waiting in a collective call.
        chainermn.global_except_hook.add_hook()
    _current = Context(comm, args.seed, rank_weights)
    return _current


def _is_cpu(spec):
    spec = str(spec).strip()
    try:
        return int(spec) < 0
    except ValueError:
        return spec.startswith('@numpy') or spec.startswith('native')


def _first_line(e):
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
