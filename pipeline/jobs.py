"""The orchestrators' jobs and which of them run.

A job (one run of a project script writing ``out/<product>``) is keyed by
its command and the content of what it reads: every argument naming an
existing file, or directory (by a digest of its files), but ``--out`` and
``--names``. :func:`run_jobs` lets doit rerun a job whose key changed or
whose product is missing, from its state in ``OUT/doit.json`` (data,
written atomically after each finished job). A started job records its key
in ``<out>.job.json``: a rerun of that key resumes a training from the
snapshots it wrote since, another key gets the restart flag (``--force``).
Children run in their own session; :func:`stop_children` ends them (a
training saves a snapshot), and on Linux so does the pipeline's death.
"""
import functools
import glob
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time

from doit.control import TaskControl
from doit.dependency import (Dependency, JSONCodec, JsonDB, MD5Checker,
                             get_file_md5)
from doit.exceptions import TaskFailed
from doit.reporter import ZeroReporter
from doit.runner import MThreadRunner
from doit.task import Stream, Task
from doit.tools import config_changed

from runtime.errors import UsageError
from runtime.files import output_path, read_json, temporary, write_text

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: ``script: (product, restart flag)``; None: it overwrites its own files.
KINDS = {'evaluate.py': ('metrics.json', None),
         'visualize.py': ('overview.png', None),
         'make_pseudo_labels.py': ('pseudo_labels.json', '--force')}
TRAINING = ('model.npz', '--force')
THREADS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
PROGRESS_INTERVAL = 30     # seconds


class JobFailed(RuntimeError):
    """A job failed; the message ends in one line naming it."""


def say(line):
    print(line + '\n', end='', flush=True)   # one write: threads print too


def make_dir(path):
    """Directory ``path``, made (with its parents) or checked: a link or a
    file there is refused (OutputError)."""
    path = os.path.normpath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return output_path(os.path.dirname(path) or '.', os.path.basename(path),
                       directory=True)


def json_or_none(path):
    """The JSON value of ``path``; None if it is no regular file of JSON
    (missing, a link, a FIFO...)."""
    try:
        return None if os.path.islink(path) else read_json(path)
    except UsageError:
        return None


@functools.lru_cache(maxsize=None)
def _md5(path, signature):
    return get_file_md5(path)


def digest(path):
    """md5 of a file's content, or of a directory's: the relative paths
    and contents of the regular files under it (links not followed). A
    file is read once while its size, time and inode stay."""
    if not os.path.isdir(path):
        st = os.stat(path)
        return _md5(path, (st.st_size, st.st_mtime_ns, st.st_ino))
    h = hashlib.md5()
    for d, dirs, names in os.walk(path):
        dirs.sort()
        for p in (os.path.join(d, n) for n in sorted(names)):
            if stat.S_ISREG(os.lstat(p).st_mode):
                h.update(('%s\0%s\0' % (os.path.relpath(p, path),
                                        digest(p))).encode())
    return h.hexdigest()


def inputs(args):
    """``(files, directories)`` that the arguments ``args`` name."""
    files, dirs, flag = [], [], None
    for a in args:
        if a.startswith('--'):
            flag = a
            continue
        if flag not in ('--out', '--names'):
            if os.path.isfile(a):
                files.append(a)
            elif os.path.isdir(a):
                dirs.append(a)
        flag = None if flag == '--out' else flag     # it takes one value
    return files, dirs


#: A child's start, so that no Python runs between fork and exec (unsafe
#: with threads): SIGTERM when the thread that started it ends (Linux:
#: PR_SET_PDEATHSIG, kept across exec), or at once if it ended before.
_CHILD = ('import ctypes, os, sys\n'
          'if sys.platform.startswith("linux"):\n'
          '    ctypes.CDLL(None).prctl(1, 15)\n'
          'if os.getppid() != int(sys.argv[1]):\n'
          '    os._exit(143)\n'
          'os.execv(sys.executable, [sys.executable] + sys.argv[2:])\n')
#: Set: start no child (set by :func:`stop_children`, cleared by a run).
stopping = threading.Event()
_lock, _running = threading.RLock(), set()


def stop_children():
    """Terminate every running child (SIGTERM: a training saves a
    snapshot), wait for it, and start no other one."""
    with _lock:
        stopping.set()
        children = list(_running)
    for proc in children:
        proc.terminate()
    for proc in children:
        proc.wait()


def _newer(paths, than):
    """Whether any of ``paths`` was modified after ``than``."""
    try:
        return any(os.stat(p).st_mtime_ns > os.stat(than).st_mtime_ns
                   for p in paths)
    except FileNotFoundError:
        return False


class Job(object):
    """One run of ``script`` (relative to the project, or absolute) with
    ``args``, writing ``out/<product>`` (``kind``: ``(product, restart
    flag)``, by default the script's :data:`KINDS`), its output going to
    ``log``."""

    def __init__(self, title, script, out, args, log, kind=None):
        self.title, self.script, self.out, self.log = title, script, out, log
        self.args = ['--out', out] + [str(a) for a in args]
        self.command = [script] + self.args
        self.product, self.restart = kind or KINDS.get(
            os.path.basename(script), TRAINING)
        self.path = os.path.join(out, self.product)
        self.record = out + '.job.json'
        self.proc = None
        self.ran = self.reused = False  # reused: an earlier run did it

    def read(self):
        """The JSON value of the product (UsageError if unreadable)."""
        return read_json(self.path)

    def run(self, device, dirs):
        """doit's action: start the script unless it finished under this
        key, and wait for it; TaskFailed with its output's tail if it
        fails. ``dirs``: the digests of the directories it reads."""
        key = hashlib.md5(json.dumps([self.command, dirs, {
            f: digest(f) for f in inputs(self.args)[0]}]).encode()).hexdigest()
        record = json_or_none(self.record)
        same = isinstance(record, dict) and record.get('key') == key
        if same and _newer([self.path], self.record):
            # done, but its pipeline died before doit recorded it
            say('== %s: finished before under the same key, reusing %s'
                % (self.title, self.path))
            self.reused = not self.ran
            return True
        resume = same and self.product == TRAINING[0] and _newer(glob.glob(
            os.path.join(glob.escape(self.out), 'snapshot_iter_*.npz')),
            self.record)
        force = [self.restart] if (self.restart and not resume and
                                   os.path.lexists(self.out)) else []
        if not same:
            write_text(self.record, json.dumps({'command': self.command,
                                                'key': key}))
        return self._execute(self.args + force, device)

    def _execute(self, args, device):
        # the log: made exclusively beside its name, then renamed over it
        # (replacing a link planted there) before the child writes to it
        env = dict(os.environ)      # on a CPU one BLAS thread per job: the
        if device in ('-1', '@numpy'):    # same sums whatever --jobs
            env.update({k: '1' for k in THREADS})
        with _lock:
            if stopping.is_set():
                return TaskFailed('%s: not started (stopping)' % self.title)
            tmp = temporary(self.log)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            os.replace(tmp, self.log)
            say('== %s (output in %s)' % (self.title, self.log))
            with os.fdopen(fd, 'w') as log:
                self.proc = subprocess.Popen(
                    [sys.executable, '-c', _CHILD, str(os.getpid()),
                     os.path.join(HERE, self.script)] + args, stdout=log,
                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
            _running.add(self.proc)
        started = time.time()
        while self.proc.poll() is None:   # the progress of a training
            try:
                self.proc.wait(PROGRESS_INTERVAL)
            except subprocess.TimeoutExpired:
                if '--iterations' in self.args:
                    say('   %s %s' % (self.title, self.progress()))
        status = self.proc.returncode
        with _lock:
            _running.discard(self.proc)
        if status != 0:
            with open(self.log, errors='replace') as f:
                tail = f.read()[-3000:].rstrip()
            return TaskFailed('%s\nerror: %s failed (exit %d); its output is '
                              'in %s' % (tail, self.title, status, self.log))
        say('== %s: done in %.0f s' % (self.title, time.time() - started))
        self.ran = True
        return True

    def progress(self):
        """``'i/N'`` of a training: the last iteration in its log."""
        log = json_or_none(os.path.join(self.out, 'log'))
        done = log[-1].get('iteration') if isinstance(log, list) and log \
            and isinstance(log[-1], dict) else 0
        return '%s/%s' % (done, self.args[self.args.index('--iterations') + 1])


class _JsonFile(JsonDB):
    def _load(self):
        data = json_or_none(self.name)
        return data if isinstance(data, dict) else {}

    def dump(self):
        write_text(self.name, self.codec.encode(self._db))


class _Reporter(ZeroReporter):
    """A line per reused job; the first failure is kept and stops the
    other running jobs."""

    def __init__(self, jobs, dependency):
        self.jobs, self.dependency, self.failure = jobs, dependency, None

    def skip_uptodate(self, task):
        job = self.jobs[task.name]
        job.reused = not job.ran
        say('== %s: reusing %s' % (job.title, job.path))

    def add_success(self, task):
        self.dependency.backend.dump()

    def add_failure(self, task, failure):
        if self.failure is None:    # an exception's last line, not its trace
            self.failure = failure.message if not failure.traceback else \
                'error: %s: %s' % (self.jobs[task.name].title,
                                   failure.traceback[-1].strip())
            stop_children()


def run_jobs(jobs, dep_file, parallel, device):
    """Run the ``jobs`` whose key changed, ``parallel`` at a time,
    their state in ``dep_file``; JobFailed if one fails."""
    named, tasks = {}, []
    for job in jobs:
        files, dirs = inputs(job.args)
        dirs = {d: digest(d) for d in dirs}
        name = job.out.replace('=', '~')       # doit refuses '=' in a name
        named[name] = job
        # io: doit must not swap sys.stdout, which the threads share
        tasks.append(Task(
            name, [(job.run, [device, dirs])], file_dep=files,
            targets=[job.path], verbosity=0, io={'capture': False},
            uptodate=[config_changed({'command': job.command,
                                      'dirs': dirs})]))
    dependency = Dependency(_JsonFile, dep_file, checker_cls=MD5Checker,
                            codec_cls=JSONCodec)
    reporter = _Reporter(named, dependency)
    control = TaskControl(tasks)
    control.process(None)
    stopping.clear()
    MThreadRunner(dependency, reporter, stream=Stream(0),
                  num_process=parallel).run_all(control.task_dispatcher())
    if reporter.failure:
        raise JobFailed(reporter.failure)
