"""experiment.py, then demo.py, end to end on a tiny shapes dataset."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from datasets import shapes
from helpers import ROOT


TINY = ['--classifier-iterations', '3', '--gain-iterations', '2',
        '--ext-images', '3', '--jobs', '2']


def run(script, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script)] +
                          [str(a) for a in args], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_experiment_then_demo(tmp_path):
    data = str(tmp_path / 'shapes')
    shapes.generate(data, seed=0, n_train=12, n_val=6, n_tune=8, n_test=10)
    media = str(tmp_path / 'media')
    run('experiment.py', '--seeds', 0, 1, '--resamples', 40, '--data-dir',
        data, '--out', tmp_path / 'exp', '--media', media, *TINY)
    with open(os.path.join(media, 'experiment.json')) as f:
        exp = json.load(f)
    # the shape the README and the demo rely on
    assert exp['seeds'] == [0, 1] and exp['wall_s'] > 0
    assert set(exp['rows']) == {'classifier', 'control', 'gain', 'gain_ext',
                                'gain_no_seg'}
    for name, keys in (('gain - control', ('attention_miou_tuned',
                                           'pointing_15px', 'map',
                                           'mean_iu')),
                       ('gain_ext - gain', ('attention_miou_sigma',))):
        for key in keys:
            d = exp['differences'][name][key]
            assert d['ci95'][0] <= d['ci95'][1]
            assert d['mean'] == pytest.approx(np.mean(d['per_seed']))
            assert d['sd_seeds'] == pytest.approx(np.std(d['per_seed'],
                                                         ddof=1))
    gain = exp['rows']['gain']
    assert len(gain['map']) == 2 and len(gain['tau_curve_test'][0]) == 19
    assert all(t in exp['taus'] for t in gain['tuned_tau'])
    assert [g['met'] for g in exp['goals'][:3]] == [False] * 3  # 2 updates
    # then every class of gain against twice its chance level
    classes = exp['per_class']['gain']
    assert len(exp['goals']) == 3 + len(classes) == 3 + 5
    named = {re.search(r'class (\w+):', g['goal']).group(1): g
             for g in exp['goals'][3:]}
    assert set(named) == set(classes)
    for name, v in classes.items():
        assert named[name]['met'] == (v['pointing_scaled']['mean'] >=
                                      2 * v['pointing_scaled_chance']['mean'])
    assert set(exp['per_class']) == set(exp['rows'])
    text = open(os.path.join(media, 'EXPERIMENT.md')).read()
    row = [l for l in text.splitlines() if l.startswith('| gain |')][0]
    mean_iu = 100 * np.array(gain['mean_iu'])
    assert row.split(' | ')[1] == '%.1f ± %.1f' % (mean_iu.mean(),
                                                   mean_iu.std(ddof=1))
    assert '## Every class (test)' in text
    assert '| gain - control |' in text.split('against its tolerance')[1]
    for picture in ('experiment_differences.png', 'experiment_tau.png'):
        assert os.path.getsize(os.path.join(media, picture)) > 1000
    assert exp['jobs'] > 0 and exp['jobs_reused'] == 0
    assert 'reused' not in text.split('\n\n')[1]
    # a rerun of the same command reuses every job and says so
    run('experiment.py', '--seeds', 0, 1, '--resamples', 40, '--data-dir',
        data, '--out', tmp_path / 'exp', '--media', media, *TINY)
    with open(os.path.join(media, 'experiment.json')) as f:
        again = json.load(f)
    assert again['jobs'] == again['jobs_reused'] == exp['jobs']
    assert again['rows'] == exp['rows']
    assert ('(%d of its %d jobs reused from an earlier run' % (
        exp['jobs'], exp['jobs'])) in open(os.path.join(
            media, 'EXPERIMENT.md')).read().split('\n\n')[1]

    out = run('demo.py', '--data-dir', data, '--out', tmp_path / 'demo',
              '--media', media, '--classifier-iterations', 3,
              '--gain-iterations', 2, '--ext-images', 3)
    with open(os.path.join(media, 'results.json')) as f:
        res = json.load(f)
    assert set(res['models']) == {'classifier', 'control_seed0',
                                  'gain_seed0', 'gain_ext_seed0'}
    d = res['differences']['gain - control']['attention_miou_tuned']
    assert d['sd_seeds'] is None and len(d['per_seed']) == 1
    results_md = open(os.path.join(media, 'RESULTS.md')).read()
    # the demo quotes what the experiment established, not claims of its own
    assert exp['command'] in results_md
    assert not re.search(r'seed \d+ (yes|NO)', out + results_md)
    for picture in ('attention_before_after.png', 'loss_gain.png',
                    'attention_during_gain.png'):
        assert os.path.getsize(os.path.join(media, picture)) > 1000
