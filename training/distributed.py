"""Data-parallel training on ChainerMN (``--communicator NAME`` under
``mpiexec``; docs/OPERATIONS.md). :func:`setup` makes the run's
:class:`Context` current; its hooks shard the data, wrap the optimizer and
evaluator, average the logged terms, and let rank 0 alone write ``--out``
and decide. Without a communicator every hook is the identity, and
neither chainermn nor mpi4py is imported."""
import os
import pickle
import re
import sys

import numpy as np
from chainer import backend
from chainer.training import extension

from runtime import cli
from runtime.device import get_device, set_seed
from runtime.errors import UsageError, one_line

INSTALL = ('apt-get install openmpi-bin libopenmpi-dev && '
           'pip install -r requirements-mpi.txt')


class Context(object):
    """Where this process stands in the run; ``comm``: the ChainerMN
    communicator, None for one process."""

    def __init__(self, comm=None, seed=0, rank_weights=None, name=None):
        self.comm, self.seed, self.rank_weights = comm, seed, rank_weights
        self.name = name          # the communicator's
        self.device = None        # this rank's chainer device
        self.rank, self.size = (comm.rank, comm.size) if comm else (0, 1)
        self.distributed = comm is not None
        self.is_writer = self.rank == 0

    def device_spec(self, spec):
        """This rank's ``--device``: GPU ``N + intra_rank`` of ``N`` (or
        ``@cupy:N``); CPU specs as they are."""
        if not self.comm:
            return spec
        m = re.match(r'^(@cupy:|cuda:)?(\d+)$', str(spec).strip())
        if not m:
            return spec
        return '%s%d' % (m.group(1) or '', int(m.group(2)) +
                         self.comm.intra_rank)

    def rank_seed(self, *more):
        """``--seed`` on rank 0, else drawn from ``(seed, rank, *more)``."""
        if self.rank == 0 and not more:
            return self.seed
        return int(np.random.SeedSequence(
            [self.seed, self.rank] + [int(m) for m in more]
        ).generate_state(1)[0])

    def on_writer(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` run by rank 0 only; its result is
        returned, or its exception raised (``every_rank``), on every
        rank."""
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

    def scatter(self, dataset, shuffle=False):
        """This rank's shard of ``dataset`` (shards of equal length;
        ``shuffle``: dealt out in an order drawn from the seed)."""
        if not self.comm:
            return dataset
        import chainermn
        return chainermn.scatter_dataset(dataset, self.comm, shuffle=shuffle,
                                         seed=self.seed)

    def wrap_optimizer(self, optimizer):
        """The multi-node optimizer: rank 0's weights broadcast now, the
        gradients averaged at every update."""
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
        """``evaluator`` averaged over the ranks."""
        if not self.comm or evaluator is None:
            return evaluator
        import chainermn
        return chainermn.create_multi_node_evaluator(evaluator, self.comm)

    def aggregate(self, trainer, keys):
        """Average the observed ``keys`` over the ranks every iteration,
        before LogReport reads them."""
        if self.comm and self.size > 1 and keys:
            trainer.extend(_MeanOverRanks(self.comm, keys))

    def any_signal(self, signum):
        """A signal number any rank received (or None): all stop after
        the same iteration."""
        if not self.comm or self.size == 1:
            return signum
        from mpi4py import MPI
        got = self.comm.mpi_comm.allreduce(int(signum or 0), op=MPI.MAX)
        return got or None

    def reseed(self, iteration):
        """Reseed a rank but 0 (which takes its snapshot's states) after a
        resume at ``iteration``."""
        set_seed(self.rank_seed(iteration), self.device)

    def rank_weights_path(self):
        """``DIR/rank<N>.npz`` of the hidden ``--rank-weights DIR`` (the
        tests'), or None."""
        if not self.rank_weights:
            return None
        os.makedirs(self.rank_weights, exist_ok=True)
        return os.path.join(self.rank_weights, 'rank%d.npz' % self.rank)

    def describe(self, batch_size):
        """Config entries of a data-parallel run (empty otherwise)."""
        if not self.comm:
            return {}
        return dict(ranks=self.size,
                    effective_batch_size=batch_size * self.size)

    def summary(self, batch_size, lr):
        return ('data-parallel: %d ranks (%s communicator) x batch size %d '
                '= effective batch size %d; learning rate %g (as given, not '
                'scaled with the ranks)' % (self.size, self.name, batch_size,
                                            batch_size * self.size, lr))

    def abort(self, status):
        """End every rank now (after a failure on one, the others would
        wait for it forever)."""
        if self.comm and self.size > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.mpi_comm.Abort(int(status))


class _MeanOverRanks(extension.Extension):
    """The observed ``keys`` replaced by their mean over the ranks (one
    allreduce). chainermn's ObservationAggregator moves Variables to
    ChainerX's ``native``, which fails without ChainerX (not built from
    chainer's sdist). Every rank must report every key at every step."""
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
    """The running script's context (one process until :func:`setup`)."""
    return _current


def is_writer():
    """Whether this process writes the run's files (rank 0)."""
    return _current.is_writer


def setup(communicator=None, seed=0, device='-1', rank_weights=None):
    """Make current the context of a run on ``communicator`` (None: one
    process), with ``seed``, this rank's device of ``device`` and
    ``rank_weights``; UsageError saying what to install without mpi4py
    or an MPI."""
    global _current
    if not communicator:
        _current = Context(seed=seed, rank_weights=rank_weights)
    else:
        _current = Context(_communicator(communicator, device), seed,
                           rank_weights, communicator)
    _current.device = get_device(_current.device_spec(device))
    cli.ranks = _current
    return _current


def _communicator(name, device):
    if name == 'pure_nccl' and _is_cpu(device):
        raise UsageError('--communicator pure_nccl needs GPUs (e.g. '
                         '--device 0); use --communicator naive on CPU')
    try:
        import mpi4py.MPI  # NOQA: loads the MPI library
    except (ImportError, OSError, RuntimeError) as e:
        raise UsageError('--communicator needs mpi4py and an MPI (%s): %s'
                         % (one_line(e), INSTALL))
    import chainermn
    try:
        comm = chainermn.create_communicator(name)
    except Exception as e:
        raise UsageError('--communicator %s: %s' % (name, one_line(e)))
    if comm.size > 1:
        # An uncaught exception on one rank aborts the job instead of
        # leaving the others waiting in a collective call.
        chainermn.global_except_hook.add_hook()
    return comm


def _is_cpu(spec):
    spec = str(spec).strip()
    try:
        return int(spec) < 0
    except ValueError:
        return spec.startswith(('@numpy', 'native'))
