"""pipeline/jobs.py: a job runs again when its command or the content of
anything it reads changed, and only then; it resumes under its key and
starts over under another; what it writes replaces planted links; its
child ends with the pipeline."""
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from helpers import ROOT, fake_job, processes_holding, wait_for
from runtime.errors import OutputError
from pipeline.jobs import (JobFailed, digest, inputs, make_dir, run_jobs,
                           stop_children)


def test_inputs_are_the_named_files_and_directories_but_out_and_names(
        tmp_path):
    model, other, data, out = (str(tmp_path / n) for n in (
        'model.npz', 'b.npz', 'data', 'out'))
    for path in (model, other):
        open(path, 'w').close()
    os.mkdir(data)
    os.mkdir(out)
    args = ['--out', out, '--modelfile', model, other, '--names', model,
            other, '--data-dir', data, '--lr', '0.1', '--split',
            str(tmp_path / 'missing.csv'), '--val-split', '']
    assert inputs(args) == ([model, other], [data])


def test_a_tree_digest_follows_contents_not_times_nor_links(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    for root in (a, b):
        (root / 'SegmentationClass').mkdir(parents=True)
        (root / 'SegmentationClass' / 'x.png').write_bytes(b'\x01\x02')
    os.utime(str(b / 'SegmentationClass' / 'x.png'), (1, 1))
    outside = tmp_path / 'outside.png'
    outside.write_bytes(b'0')
    os.symlink(str(outside), str(a / 'link.png'))
    assert digest(str(a)) == digest(str(b))
    outside.write_bytes(b'1')
    assert digest(str(a)) == digest(str(b))
    (b / 'SegmentationClass' / 'x.png').write_bytes(b'\x01\x03')
    assert digest(str(a)) != digest(str(b))


def test_make_dir_refuses_a_link_and_a_file_in_one_line(tmp_path):
    os.symlink(str(tmp_path), str(tmp_path / 'link'))
    (tmp_path / 'file').write_text('')
    for name, what in (('link', 'is a symbolic link; refusing to write '
                        'through it'), ('file', 'is a file where this tool '
                                        'writes a directory')):
        with pytest.raises(OutputError) as e:
            make_dir(str(tmp_path / name))
        assert str(e.value).startswith('%s %s' % (tmp_path / name, what))
        assert '\n' not in str(e.value)
    assert make_dir(str(tmp_path / 'new')) == str(tmp_path / 'new')
    assert os.path.isdir(make_dir(str(tmp_path / 'new')))


def run_stopped(tmp_path, job):
    """Run ``job`` in a thread and stop it once it has started (its new
    log says so)."""
    if os.path.exists(job.log):
        os.remove(job.log)
    failed = []

    def target():
        try:
            run_jobs([job], str(tmp_path / 'out' / 'doit.json'), 1, '-1')
        except JobFailed as e:
            failed.append(e)
    thread = threading.Thread(target=target)
    thread.start()
    wait_for(lambda: os.path.exists(job.log) and 'started' in open(
        job.log).read(), 'the job to start')
    stop_children()
    thread.join()
    assert failed and 'failed (exit 143)' in str(failed[0])


def test_a_stopped_job_resumes_under_its_key_and_starts_over_under_another(
        tmp_path, capsys):
    run_stopped(tmp_path, fake_job(tmp_path, 'a', '--sleep', '600'))
    job = fake_job(tmp_path, 'a', '--sleep', '600')
    run_jobs([job], str(tmp_path / 'out' / 'doit.json'), 1, '-1')
    log = open(job.log).read()
    assert 'resuming from' in log and '--force' not in log
    # finished, but the state was lost (a pipeline killed meanwhile)
    os.remove(str(tmp_path / 'out' / 'doit.json'))
    run_jobs([fake_job(tmp_path, 'a', '--sleep', '600')],
               str(tmp_path / 'out' / 'doit.json'), 1, '-1')
    assert 'a: finished before under the same key' in capsys.readouterr().out
    # another key: --force, no resume
    run_stopped(tmp_path, fake_job(tmp_path, 'a', '--sleep', '600',
                                   '--tag', 'b'))
    job = fake_job(tmp_path, 'a', '--sleep', '0', '--tag', 'b')
    run_jobs([job], str(tmp_path / 'out' / 'doit.json'), 1, '-1')
    log = open(job.log).read()
    assert '--force' in log and 'resuming from' not in log


#: A pipeline of one slow fake job under orchestrator.main.
DRIVER = '''
import sys
from pipeline import orchestrator
from pipeline.jobs import Job, run_jobs
root = sys.argv[1]
job = Job('slow', root + '/train_fake.py', root + '/out/slow',
          ['--sleep', '600'], root + '/out/logs/slow.txt')
orchestrator.main(lambda: run_jobs([job], root + '/out/doit.json', 1, '-1'))
'''


def start_driver(tmp_path):
    job = fake_job(tmp_path, 'slow')
    proc = subprocess.Popen([sys.executable, '-c', DRIVER, str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    wait_for(lambda: os.path.exists(job.log) and 'started' in open(
        job.log).read(), 'the job to start')
    return proc, job


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_pipeline_and_its_children_in_one_line(tmp_path,
                                                                 signum):
    proc, job = start_driver(tmp_path)
    proc.send_signal(signum)
    out, err = proc.communicate()
    assert proc.returncode == 128 + signum
    assert err.splitlines() == [
        'interrupted by %s: the running jobs were stopped; run the same '
        'command again to resume them' % signal.Signals(signum).name]
    assert processes_holding(job.out) == []
    assert os.path.exists(os.path.join(job.out, 'snapshot_iter_1.npz'))


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='PR_SET_PDEATHSIG is Linux only')
def test_a_killed_pipeline_leaves_no_child(tmp_path):
    proc, job = start_driver(tmp_path)
    proc.kill()
    proc.communicate()
    wait_for(lambda: not processes_holding(job.out), 'the child to end')
    # it got SIGTERM (PR_SET_PDEATHSIG), so it saved a snapshot
    assert os.path.exists(os.path.join(job.out, 'snapshot_iter_1.npz'))


def run(tmp_path, capsys, *jobs):
    """Run ``jobs``; ``{title: 'ran' or 'reused'}`` from what it printed."""
    run_jobs(list(jobs), str(tmp_path / 'out' / 'doit.json'), 2, '-1')
    out = capsys.readouterr().out
    return {j.title: 'ran' if '== %s (output in' % j.title in out else
            'reused' if '== %s: reusing' % j.title in out else out
            for j in jobs}


def two_stages(tmp_path, capsys, tag):
    """``first`` (``--tag tag``), then ``second`` reading its model."""
    first = fake_job(tmp_path, 'first', '--tag', tag)
    done = run(tmp_path, capsys, first)
    second = fake_job(tmp_path, 'second', '--modelfile', first.path,
                      '--tag', 'b')
    done.update(run(tmp_path, capsys, second))
    return done, first, second


def test_a_retrained_stage_reruns_what_reads_its_product(tmp_path, capsys):
    assert two_stages(tmp_path, capsys, 'a')[0] == {'first': 'ran',
                                                    'second': 'ran'}
    done, first, second = two_stages(tmp_path, capsys, 'a')
    assert done == {'first': 'reused', 'second': 'reused'}
    os.utime(first.path, (1, 1))        # the same content at another time
    assert two_stages(tmp_path, capsys, 'a')[0] == {'first': 'reused',
                                                    'second': 'reused'}
    done, first, second = two_stages(tmp_path, capsys, 'c')
    assert done == {'first': 'ran', 'second': 'ran'}
    with open(second.path) as f:
        assert f.read() == 'bc'


def test_a_replaced_input_file_reruns_the_job(tmp_path, capsys):
    two_stages(tmp_path, capsys, 'a')
    other = tmp_path / 'other.npz'
    other.write_text('z')
    shutil.copyfile(str(other), str(tmp_path / 'out' / 'first' / 'model.npz'))
    done, _, second = two_stages(tmp_path, capsys, 'a')
    assert done == {'first': 'reused', 'second': 'ran'}
    with open(second.path) as f:
        assert f.read() == 'bz'


def test_a_changed_file_in_an_input_directory_reruns_the_job(tmp_path,
                                                            capsys):
    data = tmp_path / 'data'
    (data / 'SegmentationClass').mkdir(parents=True)
    label = data / 'SegmentationClass' / 'a.png'
    label.write_text('1')

    def fcn():
        return run(tmp_path, capsys, fake_job(tmp_path, 'fcn', '--data-dir',
                                              str(data)))['fcn']
    assert fcn() == 'ran'
    assert fcn() == 'reused'
    label.write_text('2')
    assert fcn() == 'ran'
    (data / 'SegmentationClass' / 'b.png').write_text('3')
    assert fcn() == 'ran'
    with open(str(tmp_path / 'out' / 'fcn' / 'model.npz')) as f:
        assert f.read() == '23'
    assert fcn() == 'reused'


def test_links_at_the_log_and_record_and_a_fifo_at_the_state_are_replaced(
        tmp_path, capsys):
    job = fake_job(tmp_path, 'a', '--tag', 'x')
    target = tmp_path / 'target.txt'
    target.write_text('precious')
    state = str(tmp_path / 'out' / 'doit.json')
    for path in (job.log, job.record):
        os.symlink(str(target), path)
    os.mkfifo(state)
    assert run(tmp_path, capsys, job) == {'a': 'ran'}
    assert target.read_text() == 'precious'
    for path in (job.log, job.record, state):
        assert os.path.isfile(path) and not os.path.islink(path)
    assert run(tmp_path, capsys, fake_job(tmp_path, 'a', '--tag', 'x')) == {
        'a': 'reused'}


def test_a_failed_job_stops_the_others_and_is_named(tmp_path, capsys):
    slow = fake_job(tmp_path, 'slow', '--sleep', '600')
    bad = fake_job(tmp_path, 'bad', '--no-such-flag')
    with pytest.raises(JobFailed) as e:
        run(tmp_path, capsys, slow, bad)
    message = str(e.value)
    assert 'unrecognized arguments: --no-such-flag' in message
    assert message.splitlines()[-1] == (
        'error: bad failed (exit 2); its output is in %s' % bad.log)
    assert slow.proc is None or slow.proc.poll() is not None
    assert not os.path.exists(slow.path)


def test_jobs_run_in_threads_that_share_the_output_streams(tmp_path, capsys):
    """doit must not swap sys.stdout and sys.stderr for an action: its
    threads would restore each other's (a segfault, seen)."""
    job, seen = fake_job(tmp_path, 'a'), []
    start = job.run

    def observed(*args):
        seen.append((sys.stdout, sys.stderr))
        return start(*args)
    job.run = observed
    streams = (sys.stdout, sys.stderr)
    assert run(tmp_path, capsys, job) == {'a': 'ran'}
    assert seen == [streams]


def test_a_run_counts_the_jobs_an_earlier_run_did(tmp_path, capsys):
    """An orchestrator's wall time covers only the jobs it ran: its
    timing says how many it reused, and the pages say so."""
    from types import SimpleNamespace
    from metrics.report import reuse_note
    from pipeline.orchestrator import Pipeline
    script = fake_job(tmp_path, 'unused').script
    args = SimpleNamespace(out=str(tmp_path / 'run'), device=-1, jobs=2,
                           data_dir=str(tmp_path / 'data'))
    (tmp_path / 'data').mkdir()

    def once(tag):
        run = Pipeline(args)
        first = run.run([run.job('first', script, ['--tag', tag])])[0]
        run.run([run.job('second', script, ['--modelfile', first.path])])
        run.run([first])                # a job listed twice counts once
        return run.timing()

    assert once('a')['jobs_reused'] == 0
    timing = once('a')
    assert (timing['jobs'], timing['jobs_reused']) == (2, 2)
    assert reuse_note(timing) == (' (2 of its 2 jobs reused from an earlier '
                                  'run: their time is not in it)')
    timing = once('b')
    assert (timing['jobs'], timing['jobs_reused']) == (2, 0)
    assert reuse_note(timing) == ''
