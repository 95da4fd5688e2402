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
    'pseudo_%s_seed0' % r for r in weak.ROWS if r != 'full'} | {
    'crfgrid_%s_seed0' % r for r in weak.CRF_ROWS.values()} | {
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
    """weak.json's numbers against the test evaluation's own confusion
    matrices, summed and divided here; the CRF rows' labels written with
    the settings their grid chose on tune; every class in the tables."""
    media, out = first_run / 'media', first_run / 'weak'
    with open(str(media / 'weak.json')) as f:
        result = json.load(f)
    assert set(result['rows']) == {'classifier_cam', 'gain', 'gain_ext_2',
                                   'gain_ext_15', 'gain_crf',
                                   'gain_ext_15_crf', 'full'}
    with np.load(str(out / 'eval_test_seed0' / 'per_image.npz')) as f:
        names = list(f['names'])
        confusion = {n: f['%d/confusion' % i].sum(0)
                     for i, n in enumerate(names)}
    mean_iu = {}
    for name, hist in confusion.items():
        with np.errstate(invalid='ignore'):
            iu = np.diag(hist) / (hist.sum(0) + hist.sum(1) - np.diag(hist))
        mean_iu[name] = 100 * np.nanmean(iu)
    for name, row in result['rows'].items():
        assert row['mean_iu']['mean'] == pytest.approx(mean_iu[name])
        assert row['share_of_full'] == pytest.approx(
            mean_iu[name] / mean_iu['full'])
        assert (row['pseudo_miou'] is None) == (name == 'full')
        assert set(result['per_class'][name]) == set(shapes.CLASS_NAMES[1:])
    for name, d in result['differences'].items():
        b, a = name.split(' - ')
        d = d['mean_iu']
        assert d['mean'] == pytest.approx(mean_iu[b] - mean_iu[a])
        assert d['shown'] == (d['ci95'][0] > 0 or d['ci95'][1] < 0)
    for row, twin in weak.CRF_ROWS.items():
        with open(str(out / ('crfgrid_%s_seed0' % twin) /
                      'crf_grid.json')) as f:
            chosen = json.load(f)['rows']['single_crf']
        with open(str(out / ('pseudo_%s_seed0' % row) / 'config.json')) as f:
            config = json.load(f)
        assert config['crf'] and config['crf_tau'] == pytest.approx(
            chosen['crf']['tau'])
        assert config['crf_bilateral_sxy'] == chosen['crf']['bilateral_sxy']
    # no mask in a weak row's training list but GAIN_ext's few (2 % and
    # 15 % of 50 images: 1 and 8)
    lists = out / 'lists'
    for row, masked in (('classifier_cam', 0), ('gain', 0),
                        ('gain_ext_2', 1), ('gain_ext_15', 8)):
        with open(str(lists / ('%s_seed0.csv' % row))) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 50
        assert sum(bool(r['mask']) for r in rows) == masked
    text = (media / 'WEAK.md').read_text()
    for name in list(result['rows']) + list(shapes.CLASS_NAMES[1:]):
        assert '| %s |' % name in text or ' %s |' % name in text


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


#: An audit hook (PEP 578) that every Python process of a run loads (as
#: sitecustomize): it logs each file of READS_FROM that a process other than
#: weak.py opens. weak.py itself reads every file of the dataset once, only
#: to key its jobs by their content (pipeline/jobs.py).
AUDIT = """import os, sys
_files = set(open(os.environ['READS_FROM']).read().split())
_busy = []
def _hook(event, args):
    if event != 'open' or _busy or not isinstance(args[0], str):
        return
    if sys.argv and sys.argv[0].endswith('weak.py'):
        return
    path = os.path.realpath(args[0])
    if path in _files:
        _busy.append(1)
        with open(os.environ['READS_LOG'], 'a') as f:
            f.write('%s %s\\n' % (os.path.basename(sys.argv[0]), path))
        _busy.pop()
sys.addaudithook(_hook)
"""


def logging_reads_of(tmp_path, data, split):
    """The environment that logs the reads of ``split``'s files of the
    shapes dataset ``data`` (images, masks, annotations) into
    ``tmp_path/reads.txt``, and that path."""
    hook = tmp_path / 'hook'
    hook.mkdir()
    (hook / 'sitecustomize.py').write_text(AUDIT)
    files = [os.path.realpath(os.path.join(data, d, i + ext))
             for i in shapes.read_split(data, split)
             for d, ext in (('JPEGImages', '.jpg'),
                            ('SegmentationClass', '.png'),
                            ('Annotations', '.xml'))]
    (tmp_path / 'files.txt').write_text('\n'.join(files))
    log = tmp_path / 'reads.txt'
    log.write_text('')
    return dict(os.environ, PYTHONPATH=str(hook), READS_LOG=str(log),
                READS_FROM=str(tmp_path / 'files.txt')), log


@pytest.mark.slow
def test_sweep_chooses_on_tune_and_never_reads_test(tmp_path):
    """The sweep's choice is the best setting on tune, and no process it
    starts opens a file of the test split (an audit hook at every open;
    it sees the project's own reader open them: the control below)."""
    data = str(tmp_path / 'shapes')
    shapes.generate(data, seed=0, n_train=20, n_val=4, n_tune=6, n_test=8)
    env, reads = logging_reads_of(tmp_path, data, 'test')
    control = subprocess.run(
        [sys.executable, '-c', 'from datasets import get_dataset; '
         'get_dataset("shapes", %r, "test")[0]' % data], env=env, cwd=ROOT,
        capture_output=True, text=True)
    assert control.returncode == 0, control.stderr
    assert reads.read_text().count('/JPEGImages/') == 1
    reads.write_text('')
    media, out = tmp_path / 'media', tmp_path / 'weak'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'weak.py'), '--sweep', '--seeds',
         '3', '--data-dir', data, '--out', str(out), '--media',
         str(media), '--classifier-iterations', '1', '--gain-iterations',
         '1', '--jobs', '2'], capture_output=True, text=True, cwd=ROOT,
        env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert reads.read_text() == ''
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
    # GAIN ran --gain-iterations times each factor of SWEEP
    logs = {n: json.load(open(str(out / 'sweep' / n / 'log')))
            for n in os.listdir(str(out / 'sweep'))
            if n.startswith('gain_') and (out / 'sweep' / n).is_dir()}
    assert {max(e['iteration'] for e in log) for log in logs.values()} == \
        {s['iterations_factor'] for s in weak.SWEEP}
    assert not (media / 'weak.json').exists()
