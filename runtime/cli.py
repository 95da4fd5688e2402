"""The entry point of every script: :func:`run` reports what stops it as
one line and an exit status, never a traceback; and the command lines a
script prints for the user's next step."""
import os
import shlex
import sys

from tqdm import tqdm

from runtime import outdir
from runtime.errors import USER_ERRORS, TrainingStopped, one_line

#: The data-parallel run of this process, with ``rank``, ``size`` and
#: ``abort(status)`` (set by ``training.distributed.setup``), or None.
ranks = None


def run(main):
    """Run ``main()``; user errors become one line on stderr, exit 2;
    a training stopped on purpose (non-finite loss: 3, SIGINT/SIGTERM:
    128 + signal number, after a snapshot) one line too, and so does a
    file that cannot be written (exit 1). Then the ``--out`` it claimed is
    released (:func:`runtime.outdir.release_all`)."""
    ok = False
    try:
        main()
        ok = True
    except USER_ERRORS as e:
        _fail('error: %s' % one_line(e), 2, e)
    except TrainingStopped as e:
        _fail('%s: %s' % (e.prefix, one_line(e)), e.exit_status, e)
    except KeyboardInterrupt as e:
        _fail('interrupted', 130, e)
    except OSError as e:        # a file that cannot be written (disk full)
        _fail('error: %s%s' % (e.filename + ': ' if e.filename else '',
                               e.strerror or one_line(e)), 1, e)
    finally:
        outdir.release_all(ok)


def _fail(line, status, e):
    """Report and exit. In a data-parallel run an error that every rank
    raised together (``every_rank``) is reported by rank 0 and the ranks
    exit; one of a single rank names it and aborts the job, whose other
    ranks would wait for it forever."""
    for bar in list(tqdm._instances):   # end a bar's line before ours
        bar.close()
    together = getattr(e, 'every_rank', False)
    parallel = ranks is not None and ranks.size > 1
    if parallel and not together:
        line += ' (rank %d of %d)' % (ranks.rank, ranks.size)
    if not (parallel and together and ranks.rank):
        print(line, file=sys.stderr)
    if parallel and not together:
        ranks.abort(status)
    sys.exit(status)


def python_command():
    """The interpreter as the user can type it: its path relative to the
    current directory when it lies under it (``.venv/bin/python``), else
    ``python``."""
    path = os.path.relpath(sys.executable)
    return 'python' if path.startswith('..') or os.path.isabs(path) else path


def next_command(args, script, *words):
    """The command line of a next step: ``script`` with ``words`` and the
    ``--dataset``, ``--data-dir`` and ``--device`` of this run's ``args``
    where they are not the defaults, quoted for the shell."""
    carried = []
    if getattr(args, 'dataset', 'shapes') != 'shapes':
        carried += ['--dataset', args.dataset]
    if getattr(args, 'data_dir', None):
        carried += ['--data-dir', args.data_dir]
    if str(getattr(args, 'device', '-1')) != '-1':
        carried += ['--device', args.device]
    return ' '.join([python_command(), script] + [
        shlex.quote(str(w)) for w in list(words) + carried])


def beside(out, name):
    """The directory ``name`` beside ``out`` (``runs/gain`` -> ``runs/eval``):
    where a printed next step writes."""
    return os.path.join(os.path.dirname(os.path.normpath(out)), name)
