"""What demo.py, experiment.py, weak.py and tune.py share: their flags,
the jobs of a run under ``--out`` (:class:`Pipeline`), how they end."""
import argparse
import json
import os
import signal
import sys
import time

from datasets import shapes
from metrics import bootstrap
from pipeline.jobs import (HERE, Job, JobFailed, make_dir, run_jobs,
                           stop_children)
from runtime import flags
from runtime.errors import USER_ERRORS, one_line
from runtime.files import atomic_write


def parser(doc, name, seeds=None, resamples=False, media=True):
    """``--device``, ``--jobs``, ``--data-dir``, ``--out`` (runs/<name>),
    and ``--seeds``, ``--resamples`` and ``--media`` where asked for."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add('--device', default='-1', help='-1 for the CPU, N for GPU N')
    add('--jobs', type=int, default=os.cpu_count() or 1,
        help='jobs at a time on a CPU (1 on a GPU)')
    add('--data-dir', help='a shapes dataset (default: the generated one)')
    add('--out', default=os.path.join(HERE, 'runs', name),
        help='directory of the runs')
    if seeds is not None:
        add('--seeds', type=flags.seed, nargs='+', default=seeds,
            help='seeds of the runs (distinct; see above)')
    if resamples:
        add('--resamples', type=int, default=bootstrap.N_RESAMPLES,
            help='bootstrap resamples of the test images')
    if media:
        add('--media', default=os.path.join(HERE, 'media'),
            help='where the results and pictures go')
    return p


def parse(p):
    """The flags that ``p`` parses; repeated seeds are refused."""
    args = p.parse_args()
    seeds = getattr(args, 'seeds', [])
    if len(set(seeds)) != len(seeds):
        p.error('--seeds must be distinct')
    return args


class Pipeline(object):
    """The jobs of a run in OUT (``args.out``, or its ``sub``directory),
    their logs in OUT/logs, doit's state in OUT/doit.json."""

    def __init__(self, args, sub=None):
        self.out = make_dir(args.out)
        if sub:
            self.out = make_dir(os.path.join(self.out, sub))
        self.logs = make_dir(os.path.join(self.out, 'logs'))
        self.device = str(args.device)
        gpu = self.device not in ('-1', '@numpy')
        self.parallel = 1 if gpu else max(1, args.jobs)
        self.data_dir = args.data_dir or shapes.ensure()
        self.start, self.jobs = time.time(), {}
        print('== dataset: %s' % self.data_dir, flush=True)

    def job(self, name, script, args, title=None, kind=None):
        """A job writing OUT/``name``: ``script`` with ``args`` and this
        run's ``--device`` (``kind``: see :class:`pipeline.jobs.Job`)."""
        out = os.path.join(self.out, name)
        make_dir(os.path.dirname(out))
        return Job(title or name, script, out,
                   list(args) + ['--device', self.device],
                   os.path.join(self.logs, name.replace('/', '_') + '.txt'),
                   kind)

    def evaluation(self, name, split, models, *extra, title=None):
        """evaluate.py of ``models`` (``{name: job}``) on shapes' ``split``."""
        return self.job(name, 'evaluate.py', [
            '--dataset', 'shapes', '--data-dir', self.data_dir, '--split',
            split, '--modelfile'] + [m.path for m in models.values()] +
            ['--names'] + list(models) + list(extra), title)

    def run(self, jobs):
        """Run the ``jobs`` (a list or a dict) not done; returns them."""
        listed = list(jobs.values()) if isinstance(jobs, dict) else jobs
        self.jobs.update((job.out, job) for job in listed)
        run_jobs(listed, os.path.join(self.out, 'doit.json'), self.parallel,
                 self.device)
        return jobs

    def publish(self, media, files, what=None):
        """Write ``{name: text, bytes or a JSON value}`` into ``media``;
        ``what``: print the Markdown file and that ``what`` finished."""
        make_dir(media)
        for name, content in files.items():
            if not isinstance(content, (str, bytes)):
                content = json.dumps(content, indent=1, sort_keys=True)
            with atomic_write(os.path.join(media, name), 'wb' if isinstance(
                    content, bytes) else 'w') as f:
                f.write(content)
        for name in (n for n in files if what and n.endswith('.md')):
            print(files[name])
            print('== %s finished in %.0f s; see %s' % (
                what, self.seconds(), os.path.join(media, name)))

    def seconds(self):
        return round(time.time() - self.start)

    def timing(self):
        """This run's wall time ``wall_s`` and its ``jobs``, of which
        ``jobs_reused`` were done by an earlier run (their time is not in
        ``wall_s``)."""
        return dict(wall_s=self.seconds(), jobs=len(self.jobs),
                    jobs_reused=sum(j.reused for j in self.jobs.values()))


def main(run):
    """Run an orchestrator's ``run()``. A failed job or a refused
    directory ends it with its error line (status 1); SIGINT or SIGTERM
    stops its running jobs (a rerun resumes them) and ends it with one
    line (status 128 + the signal)."""
    def stop(signum, frame):
        stop_children()
        print('interrupted by %s: the running jobs were stopped; run the '
              'same command again to resume them'
              % signal.Signals(signum).name, file=sys.stderr)
        raise SystemExit(128 + signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, stop)
    try:
        run()
    except JobFailed as e:
        sys.exit(str(e))
    except USER_ERRORS as e:         # a refused directory, a bad product
        sys.exit('error: %s' % one_line(e))
