"""runtime/cli.py: one error line and an exit status, never a traceback."""
import subprocess
import sys

import pytest

from helpers import ROOT, break_voc, fcn_batch4_args, voc_copy


@pytest.mark.parametrize('case', ['bad-jpeg-in-loop', 'bad-modelfile'])
def test_one_line_and_no_traceback_from_a_real_process(files, tmp_path,
                                                       case):
    root = voc_copy(files, tmp_path)
    if case == 'bad-jpeg-in-loop':
        named = break_voc(root, 'truncated-jpeg')
        argv = ['train_fcn.py'] + fcn_batch4_args(root, tmp_path / 'out')
    else:
        named = files['truncated']
        argv = ['train_classifier.py', '--dataset', 'voc', '--data-dir',
                root, '--modelfile', named, '--out', tmp_path / 'out']
    proc = subprocess.run([sys.executable] + [str(a) for a in argv],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stdout + proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert named in lines[0]
