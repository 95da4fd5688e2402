"""weak.py end to end on a tiny shapes dataset; its reruns: which jobs run
again, what they write, what a signal stops."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from datasets import shapes
import weak
from helpers import ROOT, processes_holding, wait_for
from pipeline.jobs import json_or_none

#: The command line of the tiny run, with paths relative to its directory
#: (so that a copy of the directory is the same run).
TINY = ['--seeds', '0', '--data-dir', 'shapes', '--out', 'weak', '--media',
        'media', '--classifier-iterations', '2', '--gain-iterations', '2',
        '--fcn-iterations', '2', '--resamples', '30', '--jobs', '2']
JOBS = {'classifier_cam_seed0', 'eval_tune_seed0', 'eval_test_seed0'} | {
    '%s_seed0' % r for r in weak.CAM_ROWS if r != 'classifier_cam'} | {
    'pseudo_%s_seed0' % r for r in weak.CAM_ROWS} | {
    'fcn_%s_seed0' % r for r in weak.ROWS}


def start(cwd, *extra):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, 'weak.py')] +
                            TINY + list(extra), cwd=str(cwd), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(cwd, *extra):
    """``(jobs started, jobs reused)`` of a run of weak.py in ``cwd``."""
    proc = start(cwd, *extra)
    out, err = proc.communicate()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    lines = out.splitlines()
    return ({l.split()[1] for l in lines if ' (output in ' in l},
            {l.split()[1][:-1] for l in lines if ': reusing ' in l})


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
    """The directory of a finished tiny run (dataset, runs and media)."""
    base = tmp_path_factory.mktemp('weak')
    shapes.generate(str(base / 'shapes'), seed=0, n_train=50, n_val=4,
                    n_tune=6, n_test=8)
    assert run(base) == (JOBS, set())
    return base


def copy_of(first_run, tmp_path):
    work = tmp_path / 'work'
    shutil.copytree(str(first_run), str(work), symlinks=True)
    return work


@pytest.mark.slow
def test_weak_track_end_to_end(first_run):
    media, tmp_path = str(first_run / 'media'), first_run
    with open(os.path.join(media, 'weak.json')) as f:
        weak = json.load(f)
    assert set(weak['rows']) == {'classifier_cam', 'gain', 'gain_ext_2',
                                 'gain_ext_15', 'full'}
    for name, row in weak['rows'].items():
        m = row['mean_iu']
        assert m['ci95'][0] <= m['mean'] <= m['ci95'][1] or \
            m['ci95'][0] == m['ci95'][1]
        assert row['share_of_full'] == pytest.approx(
            m['mean'] / weak['rows']['full']['mean_iu']['mean'])
        assert (row['pseudo_miou'] is None) == (name == 'full')
    d = weak['differences']['gain - classifier_cam']['mean_iu']
    assert d['mean'] == pytest.approx(
        weak['rows']['gain']['mean_iu']['mean'] -
        weak['rows']['classifier_cam']['mean_iu']['mean'])
    # no mask in a weak row's training list but GAIN_ext's few (2 % and
    # 15 % of 50 images: 1 and 8)
    lists = tmp_path / 'weak' / 'lists'
    for row, masked in (('classifier_cam', 0), ('gain', 0),
                        ('gain_ext_2', 1), ('gain_ext_15', 8)):
        with open(str(lists / ('%s_seed0.csv' % row))) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 50
        assert sum(bool(r['mask']) for r in rows) == masked
    assert 'GAIN_ext' in open(os.path.join(media, 'WEAK.md')).read() or \
        'gain_ext_15' in open(os.path.join(media, 'WEAK.md')).read()


def rows(work):
    with open(str(work / 'media' / 'weak.json')) as f:
        return json.load(f)['rows']


@pytest.mark.slow
def test_an_unchanged_rerun_reuses_every_job(first_run, tmp_path):
    work = copy_of(first_run, tmp_path)
    assert run(work) == (set(), JOBS)
    assert rows(work) == rows(first_run)


@pytest.mark.slow
def test_a_changed_pseudo_label_reruns_its_fcn_and_the_test_evaluation(
        first_run, tmp_path):
    work = copy_of(first_run, tmp_path)
    for d, _, names in os.walk(str(work / 'weak' / 'pseudo_gain_seed0')):
        for name in names:      # the same contents at other times
            os.utime(os.path.join(d, name), (1, 1))
    # a pixel of every label (one alone may lie in no batch of 2 updates:
    # its FCN reruns, gives the same weights and the evaluation is reused)
    labels = work / 'weak' / 'pseudo_gain_ext_2_seed0' / 'SegmentationClass'
    for png in labels.iterdir():
        image = PIL.Image.open(str(png))
        lbl = np.array(image)
        lbl[0, 0] = 1 if lbl[0, 0] != 1 else 2
        changed = PIL.Image.fromarray(lbl, mode='P')
        changed.putpalette(image.getpalette())
        changed.save(str(png))
    assert run(work) == ({'fcn_gain_ext_2_seed0', 'eval_test_seed0'},
                         JOBS - {'fcn_gain_ext_2_seed0', 'eval_test_seed0'})


@pytest.mark.slow
def test_a_replaced_model_reruns_what_reads_it_and_links_are_replaced(
        first_run, tmp_path):
    work = copy_of(first_run, tmp_path)
    out = work / 'weak'
    shutil.copyfile(str(out / 'fcn_gain_seed0' / 'model.npz'),
                    str(out / 'fcn_full_seed0' / 'model.npz'))
    target = tmp_path / 'precious.txt'
    target.write_text('precious')
    planted = [out / 'lists' / 'val.csv', out / 'logs' / 'eval_test_seed0.txt',
               out / 'eval_test_seed0.job.json']
    for path in planted:
        path.unlink()
        os.symlink(str(target), str(path))
    assert run(work) == ({'eval_test_seed0'}, JOBS - {'eval_test_seed0'})
    assert target.read_text() == 'precious'
    for path in planted:
        assert path.is_file() and not path.is_symlink()
    assert (out / 'lists' / 'val.csv').read_text().startswith('image,labels')
    full, gain = rows(work)['full'], rows(work)['gain']
    assert full['mean_iu']['per_seed'] == gain['mean_iu']['per_seed']


@pytest.mark.slow
def test_sigterm_stops_every_job_and_a_rerun_resumes_and_reruns_downstream(
        first_run, tmp_path):
    work = copy_of(first_run, tmp_path)
    longer = ['--classifier-iterations', '100']
    proc = start(work, *longer)
    for line in proc.stdout:
        if line.startswith('== classifier_cam_seed0 (output in'):
            break
    reported = work / 'weak' / 'classifier_cam_seed0' / 'log'

    def training():     # its LogReport has logged iteration 10 of 100
        log = json_or_none(str(reported))
        return bool(log) and log[-1]['iteration'] >= 10
    wait_for(training, 'training')
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.splitlines() == ['interrupted by SIGTERM: the running jobs '
                                'were stopped; run the same command again '
                                'to resume them']
    assert processes_holding('weak/classifier_cam_seed0', work) == []
    # every job downstream of the classifier runs again, the classifier
    # resumes from its snapshot
    assert run(work, *longer) == (JOBS - {'fcn_full_seed0'},
                                  {'fcn_full_seed0'})
    log = work / 'weak' / 'logs' / 'classifier_cam_seed0.txt'
    assert 'resuming from' in log.read_text()
    with open(str(work / 'media' / 'weak.json')) as f:
        assert json.load(f)['config']['classifier_iterations'] == 100


@pytest.mark.parametrize('linked', ['', 'logs', 'lists'])
def test_a_linked_directory_is_refused_in_one_line(tmp_path, linked):
    out, elsewhere = tmp_path / 'weak', tmp_path / 'elsewhere'
    elsewhere.mkdir()
    if linked:
        out.mkdir()
    os.symlink(str(elsewhere), str(out / linked if linked else out))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'weak.py'), '--out', str(out),
         '--data-dir', str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        'error: %s is a symbolic link; refusing to write through it: remove '
        'it or pick another --out' % (out / linked if linked else out)]
    assert os.listdir(str(elsewhere)) == []


@pytest.mark.slow
def test_sweep_chooses_on_tune_and_never_reads_test(tmp_path):
    data = str(tmp_path / 'shapes')
    shapes.generate(data, seed=0, n_train=20, n_val=4, n_tune=6, n_test=8)
    media, out = tmp_path / 'media', tmp_path / 'weak'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'weak.py'), '--sweep', '--seeds',
         '3', '--data-dir', data, '--out', str(out), '--media',
         str(media), '--classifier-iterations', '1', '--gain-iterations',
         '1', '--jobs', '2'], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(str(media / 'weak_sweep.json')) as f:
        sweep = json.load(f)
    gains = {n: r for n, r in sweep['rows'].items() if n != 'classifier_cam'}
    assert len(gains) == len(weak.SWEEP)
    assert sorted(r['setting']['am_weight'] for r in gains.values()) == \
        sorted(s['am_weight'] for s in weak.SWEEP)
    best = max(gains.values(), key=lambda r: sum(r['attention_miou']))
    assert sweep['chosen'] == best['setting']
    for row in sweep['rows'].values():
        assert len(row['attention_miou']) == 1
    # GAIN ran --gain-iterations times each factor of SWEEP; no test
    # evaluation, no pseudo labels, no FCN
    logs = {n: json.load(open(str(out / 'sweep' / n / 'log')))
            for n in os.listdir(str(out / 'sweep'))
            if n.startswith('gain_') and (out / 'sweep' / n).is_dir()}
    assert {max(e['iteration'] for e in log) for log in logs.values()} == \
        {s['iterations_factor'] for s in weak.SWEEP}
    assert not [n for n in os.listdir(str(out / 'sweep'))
                if 'test' in n or n.startswith(('pseudo', 'fcn'))]
    assert not (media / 'weak.json').exists()
