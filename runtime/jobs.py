"""Running the project's scripts as parallel jobs (the demo and the
experiment are pipelines of them).

A :class:`Job` is one run of a script that writes ``out/<product>``
(model.npz, metrics.json...). Its command line is kept beside it in
``<out>.job.json`` once it succeeds, so a job whose product exists from
the same command line is reused, and one whose command changed starts
over. :func:`run_jobs` runs a list of jobs a few at a time, one BLAS
thread each on a CPU, and prints their progress.
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREADS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')


class JobFailed(RuntimeError):
    """A job exited with an error; the message holds its output's tail."""


class Job(object):
    """One run of ``script`` (a path relative to the project) with
    ``args``, writing ``out/product``; its output goes to ``log``.
    ``restart``: the flag that lets the script replace an ``out`` made by
    another command line (``--force`` for training; None when the script
    overwrites its own files)."""

    def __init__(self, title, script, out, args, log, product='model.npz',
                 restart='--force'):
        self.title, self.script, self.out = title, script, out
        self.args = ['--out', out] + [str(a) for a in args]
        self.log, self.product, self.restart = log, product, restart
        self.proc = self.started = None

    @property
    def path(self):
        """The job's product file."""
        return os.path.join(self.out, self.product)

    def _record(self):
        return self.out + '.job.json'

    def command(self):
        return [self.script] + self.args

    def done(self):
        """Whether the product exists from this very command line."""
        try:
            with open(self._record()) as f:
                same = json.load(f) == self.command()
        except (OSError, ValueError):
            return False
        return same and os.path.exists(self.path)

    def start(self, env):
        args = list(self.args)
        if os.path.exists(self.out) and self.restart:
            args.append(self.restart)    # another command line made it
        os.makedirs(os.path.dirname(os.path.abspath(self.log)),
                    exist_ok=True)
        self.started = time.time()
        with open(self.log, 'w') as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, self.script)] + args,
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def progress(self):
        """``'i/N'`` of a training job (its log's last iteration), else
        ``'running'``."""
        try:
            with open(os.path.join(self.out, 'log')) as f:
                done = json.load(f)[-1]['iteration']
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            return 'running'
        total = (self.args[self.args.index('--iterations') + 1]
                 if '--iterations' in self.args else '?')
        return '%d/%s' % (done, total)

    def finish(self):
        """Wait for the process; JobFailed with its output's tail if it
        failed, else record its command line."""
        if self.proc.wait() != 0:
            with open(self.log) as f:
                tail = f.read()[-3000:]
            raise JobFailed('%s\nerror: %s failed (exit %d); its output is '
                            'in %s' % (tail.rstrip(), self.title,
                                       self.proc.returncode, self.log))
        with open(self._record(), 'w') as f:
            json.dump(self.command(), f)
        print('== %s: done in %.0f s' % (self.title,
                                         time.time() - self.started),
              flush=True)


def child_env(device):
    """The environment of a job: one BLAS thread per process on a CPU, so
    that parallel jobs share the cores and every run computes the same
    sums in the same order, whatever the number of jobs."""
    env = dict(os.environ)
    if str(device) in ('-1', '@numpy'):
        env.update({k: '1' for k in THREADS})
    return env


def run_jobs(jobs, parallel, device, interval=30):
    """Run the ``jobs`` that are not :meth:`Job.done`, ``parallel`` at a
    time, in order; print their progress every ``interval`` seconds. A
    failed job stops the others and raises :class:`JobFailed`."""
    env = child_env(device)
    todo = []
    for job in jobs:
        if job.done():
            print('== %s: reusing %s' % (job.title, job.path), flush=True)
        else:
            todo.append(job)
    running, last = [], time.time()
    try:
        while todo or running:
            while todo and len(running) < parallel:
                job = todo.pop(0)
                print('== %s (output in %s)' % (job.title, job.log),
                      flush=True)
                job.start(env)
                running.append(job)
            time.sleep(0.5)
            for job in [j for j in running if j.proc.poll() is not None]:
                running.remove(job)
                job.finish()
            if running and time.time() - last > interval:
                last = time.time()
                print('   ' + ', '.join('%s %s' % (j.title, j.progress())
                                        for j in running), flush=True)
    finally:
        for job in running:
            if job.proc.poll() is None:
                job.proc.terminate()
                job.proc.wait()
