"""weak.py end to end on a tiny shapes dataset."""
import csv
import json
import os
import subprocess
import sys

import pytest

from datasets import shapes
import weak
from helpers import ROOT


@pytest.mark.slow
def test_weak_track_end_to_end(tmp_path):
    data = str(tmp_path / 'shapes')
    shapes.generate(data, seed=0, n_train=50, n_val=4, n_tune=6, n_test=8)
    media = str(tmp_path / 'media')
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'weak.py'), '--seeds', '0',
         '--data-dir', data, '--out', str(tmp_path / 'weak'), '--media',
         media, '--classifier-iterations', '2', '--gain-iterations', '2',
         '--fcn-iterations', '2', '--resamples', '30', '--jobs', '2'],
        capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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
