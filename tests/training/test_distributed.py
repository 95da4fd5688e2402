"""training/distributed.py: two ranks under mpiexec against one process."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import chainer
import numpy as np
import pytest

from helpers import N_VOC, ROOT, run_script, write_example, write_voc
from models import FCN8s
from models.io import load_model, save_model


def _mpi_missing():
    if shutil.which('mpiexec') is None:
        return 'no mpiexec (apt-get install openmpi-bin libopenmpi-dev)'
    if importlib.util.find_spec('mpi4py') is None:
        return 'no mpi4py (make setup MPI=1)'
    return None


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None,
                               reason=str(_mpi_missing()))


def mpiexec(n):
    """``mpiexec -n N`` with what Open MPI needs here (root, 2 cores)."""
    cmd = ['mpiexec', '-n', str(n)]
    version = subprocess.run(['mpiexec', '--version'], capture_output=True,
                             text=True)
    if 'Open MPI' in version.stdout + version.stderr or \
            'OpenRTE' in version.stdout + version.stderr:
        cmd += ['--oversubscribe']
    return cmd


def mpi_env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1',
               OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
               MKL_NUM_THREADS='1')
    return env


def write_one_class_voc(root, n, size=(40, 48), seed=0):
    """A VOC ``train`` split whose images hold exactly one class each and
    the same number of labelled pixels (row 0 ignored): every batch-mean
    loss term (L_cl over images x classes, L_seg over labelled pixels, L_am
    over the erased (image, class) pairs) then has the same count on every
    rank, and the mean of the ranks' means is the mean over the global
    batch."""
    rng = np.random.RandomState(seed)
    for d in ('JPEGImages', 'SegmentationClass',
              os.path.join('ImageSets', 'Segmentation')):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    ids = ['one_%03d' % i for i in range(n)]
    for k, i in enumerate(ids):
        h, w = size
        img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        lbl = np.zeros((h, w), dtype=np.uint8)
        y, x = rng.randint(1, h - 12), rng.randint(0, w - 14)
        lbl[y:y + 12, x:x + 14] = 1 + k % 3
        img[y:y + 12, x:x + 14] //= 2
        lbl[0, :] = 255
        write_example(root, i, img, lbl)
    with open(os.path.join(root, 'ImageSets', 'Segmentation',
                           'train.txt'), 'w') as f:
        f.write('\n'.join(ids) + '\n')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp('distributed')
    voc = str(base / 'VOC')
    write_voc(voc, {'val': 3})
    write_one_class_voc(voc, 4)
    np.random.seed(0)
    model = FCN8s(N_VOC, 1 / 16.)
    rng = np.random.RandomState(1)
    for name, p in model.namedparams():   # a head that scores something
        if 'score' in name:
            p.array[...] = rng.normal(0, 0.1, p.shape)
    model.head_trained_by = ['a test fixture']
    modelfile = str(base / 'model.npz')
    save_model(modelfile, model)
    return dict(voc=voc, model=modelfile, base=base)


def gain_args(setup, out, batch_size, iterations=3):
    return ['--dataset', 'voc', '--data-dir', setup['voc'],
            '--modelfile', setup['model'], '--out', out,
            '--batch-size', batch_size, '--iterations', iterations,
            '--lr', 1e-4, '--seed', 1]


def run_ranks(n, args, timeout=300):
    cmd = mpiexec(n) + [sys.executable, os.path.join(ROOT, 'train_GAIN.py'),
                        '--communicator', 'naive'] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=ROOT, env=mpi_env(), capture_output=True,
                          text=True, timeout=timeout)


def params(path):
    model, _ = load_model(path)
    return {n: p.array.copy() for n, p in model.namedparams()}


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[n] - b[n]).max()) for n in a)


@needs_mpi
def test_two_ranks_equal_one_process_over_the_global_batch(
        setup, tmp_path, monkeypatch, capsys):
    """4 training images, 2 ranks x batch 2 (each rank's batch is its whole
    shard) against one process x batch 4: the step covers the same 4
    images whatever the order. --deterministic turns dropout and flips
    off, the only random draws of a step. One step: after it the runs
    differ by float rounding only, and later steps can pass ReLU and
    max-pooling kinks on different sides (a weight difference of 4e-8 was
    seen to change a gradient element by 1e-3), which Adam's sign-like
    steps turn into differences of ~lr that say nothing about the ranks'
    arithmetic."""
    two, dump = str(tmp_path / 'two'), str(tmp_path / 'ranks')
    done = run_ranks(2, gain_args(setup, two, 2, iterations=1) + [
        '--deterministic', '--rank-weights', dump])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert 'Traceback' not in done.stderr
    # rank 0 alone reports the data-parallel set-up
    assert done.stdout.count('effective batch size 4') == 1, done.stdout
    config = json.load(open(os.path.join(two, 'config.json')))
    assert config['ranks'] == 2 and config['effective_batch_size'] == 4
    assert config['batch_size'] == 2 and config['communicator'] == 'naive'
    log = json.load(open(os.path.join(two, 'log')))
    assert log[-1]['iteration'] == 1 and 'validation/main/seg' in log[-1]

    rank0, rank1 = params(dump + '/rank0.npz'), params(dump + '/rank1.npz')
    assert max_diff(rank0, rank1) == 0          # the same weights, bit for bit
    assert max_diff(rank0, params(two + '/model.npz')) == 0
    start = params(setup['model'])
    assert max_diff(rank0, start) > 5e-5        # an Adam step of lr 1e-4

    one = str(tmp_path / 'one')
    # --deterministic turns train mode off for the process: back on after
    monkeypatch.setattr(chainer.global_config, 'train', True)
    code, err = run_script('train_GAIN', gain_args(setup, one, 4,
                                                   iterations=1) + [
        '--deterministic'], monkeypatch, capsys)
    assert code == 0, err
    single = params(one + '/model.npz')
    # float32 sums in another order (Adam makes an element whose gradient
    # is near 0 sensitive to it); a wrong step is off by ~lr = 1e-4
    assert max_diff(rank0, single) < 5e-6, max_diff(rank0, single)
    # the same log: the ranks' loss terms averaged = the global batch's
    log1 = json.load(open(os.path.join(one, 'log')))
    for key in ('main/loss', 'main/cl', 'main/am', 'main/seg'):
        np.testing.assert_allclose(log[-1][key], log1[-1][key], rtol=1e-4)


@needs_mpi
def test_ranks_share_one_out_dir(setup, tmp_path):
    """Only rank 0 decides on --out: a finished run is refused once, with
    every rank exiting 2; --resume continues it on both ranks from rank
    0's snapshot."""
    out, dump = str(tmp_path / 'run'), str(tmp_path / 'ranks')
    args = gain_args(setup, out, 1, iterations=2)
    first = run_ranks(2, args)
    assert first.returncode == 0, first.stderr[-3000:]
    before = open(out + '/model.npz', 'rb').read()

    again = run_ranks(2, args)
    assert again.returncode == 2, again.stderr[-3000:]
    errors = [l for l in again.stderr.splitlines() if l.startswith('error:')]
    assert len(errors) == 1 and 'finished run' in errors[0], again.stderr
    assert open(out + '/model.npz', 'rb').read() == before

    more = run_ranks(2, gain_args(setup, out, 1, iterations=4) + [
        '--resume', '--rank-weights', dump])
    assert more.returncode == 0, more.stderr[-3000:]
    assert more.stderr.count('resuming from') == 1, more.stderr
    rank0, rank1 = params(dump + '/rank0.npz'), params(dump + '/rank1.npz')
    assert max_diff(rank0, rank1) == 0
    log = json.load(open(os.path.join(out, 'log')))
    # rank 0's log goes on, after its validation before the first update
    assert [e['iteration'] for e in log] == [0, 2, 4]


@needs_mpi
def test_fcn_and_classifier_ranks_agree(setup, tmp_path):
    """The other two training scripts share the wiring."""
    common = ['--dataset', 'voc', '--data-dir', setup['voc'], '--batch-size',
              1, '--iterations', 2, '--communicator', 'naive']
    fcn = str(tmp_path / 'fcn')
    steps = [('train_fcn.py', fcn, ['--width', 0.0625]),
             ('train_classifier.py', str(tmp_path / 'cls'),
              ['--modelfile', fcn + '/model.npz'])]
    for script, out, more in steps:
        dump = out + '_ranks'
        cmd = mpiexec(2) + [sys.executable, os.path.join(ROOT, script),
                            '--out', out, '--rank-weights', dump] + [
            str(a) for a in common + more]
        done = subprocess.run(cmd, cwd=ROOT, env=mpi_env(),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, script + done.stderr[-3000:]
        assert max_diff(params(dump + '/rank0.npz'),
                        params(dump + '/rank1.npz')) == 0, script
        assert json.load(open(out + '/config.json'))['ranks'] == 2


def test_communicator_without_mpi_is_one_line(setup, tmp_path, monkeypatch,
                                              capsys):
    monkeypatch.setitem(sys.modules, 'mpi4py', None)   # import fails
    code, err = run_script('train_GAIN', gain_args(
        setup, str(tmp_path / 'out'), 2, 1) + ['--communicator', 'naive'],
        monkeypatch, capsys)
    assert code == 2
    assert err.strip().count('\n') == 0, err
    assert err.startswith('error: --communicator needs mpi4py and an MPI')
    assert 'apt-get install openmpi-bin libopenmpi-dev' in err
    assert 'pip install' in err


def test_without_communicator_no_mpi_is_imported(setup, tmp_path,
                                                 monkeypatch, capsys):
    before = {'mpi4py', 'chainermn'} & set(sys.modules)
    code, err = run_script('train_GAIN', gain_args(
        setup, str(tmp_path / 'out'), 2, 1) + ['--val-split', ''],
        monkeypatch, capsys)
    assert code == 0, err
    assert {'mpi4py', 'chainermn'} & set(sys.modules) == before
    config = json.load(open(str(tmp_path / 'out' / 'config.json')))
    assert 'effective_batch_size' not in config


def test_pure_nccl_on_cpu_is_refused(setup, tmp_path, monkeypatch, capsys):
    code, err = run_script('train_GAIN', gain_args(
        setup, str(tmp_path / 'out'), 2, 1) + ['--communicator', 'pure_nccl'],
        monkeypatch, capsys)
    assert code == 2 and 'pure_nccl needs GPUs' in err
