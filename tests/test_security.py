"""What a user relies on when the input is hostile or careless: snapshots
and model files are data, never code; nothing is written outside --out;
nothing finished is deleted before the new run's inputs are checked and it
has something to replace it with; one run per --out; config.json describes
the run that happened; odd flags, images and lists are one-line errors."""
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time

import numpy as np
import PIL.Image
import pytest

from helpers import error_line, read_tree, run_script, write_voc
from datasets import DatasetError, VOCSegmentation
from datasets.voc import read_image
from models import FCN8s
from test_reliability import toy_trainer
from runtime import outdir
from runtime.errors import SnapshotError, WriteFailed
from runtime.model_files import save_model
from runtime.snapshots import _save_synced, list_snapshots, read_snapshot
from training.trainer import run_training as finish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
           MKL_NUM_THREADS='1')


def fcn_args(voc, out, *extra):
    return ['--dataset', 'voc', '--data-dir', voc, '--out', out,
            '--iterations', 2, '--batch-size', 2, '--val-split', '',
            '--width', 1 / 16., '--snapshot-interval', 1] + list(extra)


def gain_args(files, out, *extra):
    return ['--dataset', 'voc', '--data-dir', files['voc'], '--out', out,
            '--modelfile', files['model'], '--iterations', 2,
            '--batch-size', 2, '--val-split', '', '--snapshot-interval', 1,
            '--attention-interval', 1] + list(extra)


def finished_fcn(files, out, monkeypatch, capsys):
    code, err = run_script('train_fcn', fcn_args(files['voc'], out),
                           monkeypatch, capsys)
    assert code == 0, err
    return read_tree(str(out))


# -- 1. snapshots and model files are data ----------------------------------
class Payload(object):
    """Unpickling it creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


def poison(path, marker):
    """Add an object array holding a :class:`Payload` to an npz."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays['extensions/snapshot/payload'] = np.array([Payload(marker)],
                                                     dtype=object)
    with open(path, 'wb') as f:
        np.savez(f, **arrays)


def test_the_payload_is_live(tmp_path):
    """The payload of the tests below runs when unpickled."""
    path, marker = str(tmp_path / 'p.npz'), str(tmp_path / 'marker')
    with open(path, 'wb') as f:
        np.savez(f, a=np.zeros(1))
    poison(path, marker)
    with np.load(path, allow_pickle=True) as f:
        f['extensions/snapshot/payload']
    assert os.path.exists(marker)


def test_a_pickled_snapshot_never_runs_and_is_set_aside(tmp_path, capsys):
    out, marker = tmp_path / 'run', str(tmp_path / 'marker')
    toy_trainer(out, iterations=6)[0].run()
    poison(str(out / 'snapshot_iter_6.npz'), marker)
    trainer, _ = toy_trainer(out, iterations=6)
    trainer.run()
    err = capsys.readouterr().err
    assert not os.path.exists(marker)
    assert 'holds pickled data (object array extensions/snapshot/payload)' \
        in err
    assert 'resuming from %s' % (out / 'snapshot_iter_3.npz') in err
    assert os.path.exists(str(out / 'snapshot_iter_6.npz.corrupt'))


def test_resume_of_a_pickled_snapshot_is_a_one_line_error(tmp_path):
    out, marker = tmp_path / 'run', str(tmp_path / 'marker')
    toy_trainer(out, iterations=3)[0].run()
    path = str(out / 'snapshot_iter_3.npz')
    poison(path, marker)
    trainer, _ = toy_trainer(tmp_path / 'other', resume=path)
    with pytest.raises(SnapshotError) as e:
        trainer.run(show_loop_exception_msg=False)
    assert not os.path.exists(marker)
    assert 'holds pickled data' in str(e.value) and '\n' not in str(e.value)


def test_a_pickled_model_file_never_runs(files, tmp_path, monkeypatch,
                                         capsys):
    path, marker = str(tmp_path / 'm.npz'), str(tmp_path / 'marker')
    shutil.copy(files['model'], path)
    poison(path, marker)
    code, err = run_script('train_GAIN', gain_args(files, tmp_path / 'g') +
                           ['--modelfile', path], monkeypatch, capsys)
    assert code == 2 and path in error_line(err)
    assert not os.path.exists(marker)


def test_snapshots_are_never_written_with_pickled_data(tmp_path):
    path = str(tmp_path / 'snapshot_iter_1.npz')
    with pytest.raises(SnapshotError, match='updater/x is not a plain'):
        _save_synced(path, {'updater/x': np.asarray(None),
                            'updater/iteration': np.asarray(1)})
    assert not os.path.exists(path)


def test_snapshots_of_a_gain_run_hold_only_plain_arrays(files, tmp_path,
                                                        monkeypatch, capsys):
    """Every state chainer serializes for our trainer (RNG states,
    iterator, logs, plots, bad-sample counts) reads back without pickle."""
    out = tmp_path / 'gain'
    code, err = run_script('train_GAIN', gain_args(files, out, '--skip-bad'),
                           monkeypatch, capsys)
    assert code == 0, err
    for _, path in list_snapshots(str(out)):
        with np.load(path, allow_pickle=False) as f:
            kinds = {f[k].dtype.kind for k in f.files}
        assert kinds <= set('biufU'), kinds


# -- 2. ids and output paths stay inside ------------------------------------
@pytest.mark.parametrize('line,problem', [
    ('../../victim/v', "has a '..' component"),
    ('a/../../x', "has a '..' component"),
    ('/etc/passwd', 'is an absolute path'),
    ('x\0y', 'holds a NUL character'),
    ('/JPEGImages/../../x.jpg /SegmentationClass/x.png',
     "has a '..' component"),
])
def test_ids_outside_the_dataset_are_refused_naming_the_line(tmp_path, line,
                                                            problem):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 2})
    split = os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt')
    with open(split, 'a') as f:
        f.write(line + '\n')
    with pytest.raises(DatasetError) as e:
        VOCSegmentation(root, 'train')
    assert str(e.value).startswith('%s line 3: ' % split)
    assert problem in str(e.value) and '\n' not in str(e.value)


def victim_voc(tmp_path):
    """A VOC dir whose train list names ``../../victim/v`` (a real image
    and label outside the dataset); returns the victim directory."""
    root = str(tmp_path / 'data' / 'VOC')
    write_voc(root, {'train': 2}, n_class=21)
    victim = str(tmp_path / 'data' / 'victim')
    os.makedirs(victim)
    for ext in ('.jpg', '.png'):
        shutil.copy(os.path.join(root, 'JPEGImages' if ext == '.jpg' else
                                 'SegmentationClass', 'train_000' + ext),
                    os.path.join(victim, 'v' + ext))
    with open(os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt'),
              'a') as f:
        f.write('../../victim/v\n')
    return root, victim


@pytest.mark.parametrize('script', ['make_pseudo_labels', 'visualize'])
def test_a_dotdot_id_leaves_files_outside_out_byte_identical(
        files, tmp_path, monkeypatch, capsys, script):
    root, victim = victim_voc(tmp_path)
    before = read_tree(victim)
    if script == 'make_pseudo_labels':
        argv = ['--modelfile', files['model']]
    else:
        argv = ['--pretrained', files['model'], '--trained', files['model'],
                '--save-cams', '--all']
    code, err = run_script(script, ['--dataset', 'voc', '--data-dir', root,
                                    '--split', 'train',
                                    '--out', tmp_path / 'out'] + argv,
                           monkeypatch, capsys)
    assert code == 2 and "line 3: '../../victim/v'" in error_line(err)
    assert read_tree(victim) == before
    assert not any(os.path.islink(os.path.join(victim, n))
                   for n in os.listdir(victim))


def test_ids_with_subfolders_work_in_visualize_and_pseudo_labels(
        files, tmp_path, monkeypatch, capsys):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 2}, n_class=21)
    for d, ext in (('JPEGImages', '.jpg'), ('SegmentationClass', '.png')):
        os.makedirs(os.path.join(root, d, 'sub'))
        os.rename(os.path.join(root, d, 'train_001' + ext),
                  os.path.join(root, d, 'sub', 'x' + ext))
    with open(os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt'),
              'w') as f:
        f.write('train_000\nsub/x\n')
    common = ['--dataset', 'voc', '--data-dir', root, '--split', 'train']
    vis, pseudo = tmp_path / 'vis', tmp_path / 'pseudo'
    code, err = run_script('visualize', common + [
        '--out', vis, '--pretrained', files['model'], '--trained',
        files['model'], '--save-cams'], monkeypatch, capsys)
    assert code == 0, err
    assert (vis / 'sub' / 'x.png').is_file()
    assert (vis / 'cams' / 'sub' / 'x.npz').is_file()
    code, err = run_script('make_pseudo_labels', common + [
        '--out', pseudo, '--modelfile', files['model']], monkeypatch, capsys)
    assert code == 0, err
    assert (pseudo / 'SegmentationClass' / 'sub' / 'x.png').is_file()
    assert os.path.samefile(str(pseudo / 'JPEGImages' / 'sub' / 'x.jpg'),
                            os.path.join(root, 'JPEGImages', 'sub', 'x.jpg'))


def test_output_paths_stay_under_out(tmp_path):
    out = str(tmp_path / 'out')
    os.makedirs(out)
    os.symlink(str(tmp_path), os.path.join(out, 'link'))
    for names in [('..', 'x.png'), ('a/../../x.png',), ('/etc/x.png',),
                  ('..',), ('.',)]:
        with pytest.raises(outdir.OutputError, match='outside --out'):
            outdir.output_path(out, *names)
    with pytest.raises(outdir.OutputError, match='link is a symbolic link'):
        outdir.output_path(out, 'link', 'x.png')
    path = outdir.output_path(out, 'cams', 'sub/x.npz')
    assert path == os.path.join(out, 'cams', 'sub', 'x.npz')
    assert os.path.isdir(os.path.dirname(path))


# -- 3. --force checks every input first, replaces only at the end ----------
@pytest.mark.parametrize('bad', [
    ['--data-dir', '/nonexistent/typo'],
    ['--modelfile', '/nonexistent/model.npz'],
    ['--device', '@nonexistent:0'],
    ['--width', '0.5', '--modelfile', 'FILE'],   # model of another width
    ['--split', 'broken'],                       # fails in the first step
])
def test_force_with_a_bad_input_leaves_the_finished_run_intact(
        files, tmp_path, monkeypatch, capsys, bad):
    out = tmp_path / 'keep'
    before = finished_fcn(files, out, monkeypatch, capsys)
    assert 'model.npz' in before and 'snapshot_iter_2.npz' in before
    voc = files['voc']
    if bad == ['--split', 'broken']:
        voc = str(tmp_path / 'VOC')
        shutil.copytree(files['voc'], voc)
        split = os.path.join(voc, 'ImageSets', 'Segmentation', 'broken.txt')
        with open(split, 'w') as f:
            f.write('train_000\ntrain_001\n')
        open(os.path.join(voc, 'JPEGImages', 'train_001.jpg'), 'wb').write(
            b'not a jpeg')
    bad = [files['model'] if a == 'FILE' else a for a in bad]
    code, err = run_script('train_fcn', fcn_args(voc, out, '--force', *bad),
                           monkeypatch, capsys)
    assert code == 2, err
    error_line(err)
    assert read_tree(str(out)) == before


def test_force_replaces_the_old_run_only_when_the_new_one_is_done(
        files, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'gain'
    code, err = run_script('train_GAIN', gain_args(files, out, '--iterations',
                                                   3), monkeypatch, capsys)
    assert code == 0, err
    assert (out / 'attention' / 'iter_000003.png').exists()
    code, err = run_script('train_GAIN', gain_args(files, out, '--force'),
                           monkeypatch, capsys)
    assert code == 0, err
    assert sorted(os.listdir(str(out / 'attention'))) == [
        'iter_000001.png', 'iter_000002.png']        # no stale iter_3
    assert [it for it, _ in list_snapshots(str(out))] == [1, 2]
    assert not (out / outdir.STAGING).exists()
    assert json.load(open(str(out / 'config.json')))['iterations'] == 2


def test_a_killed_force_run_gives_the_old_run_back(files, tmp_path,
                                                   monkeypatch, capsys):
    """kill -9 after the old run was moved aside, before the new one wrote
    anything: the next run on --out puts it back."""
    out = str(tmp_path / 'keep')
    before = finished_fcn(files, out, monkeypatch, capsys)
    claim = outdir.claim_training(out, force=True)
    claim.start_over()
    open(os.path.join(out, 'config.json'), 'w').write('{"new": 1}')
    assert not os.path.exists(os.path.join(out, 'model.npz'))
    os.close(claim.fd)                  # what kill -9 leaves behind
    outdir._claims.remove(claim)
    code, err = run_script('train_fcn', fcn_args(files['voc'], out),
                           monkeypatch, capsys)
    assert code == 2 and 'already holds a finished run' in error_line(err)
    assert read_tree(out) == before


@pytest.mark.parametrize('script', ['train_classifier', 'train_GAIN',
                                    'evaluate', 'visualize',
                                    'make_pseudo_labels'])
def test_an_out_holding_the_input_model_is_refused(files, tmp_path,
                                                   monkeypatch, capsys,
                                                   script):
    out = tmp_path / 'keep2'
    out.mkdir()
    model = str(out / 'm.npz')      # model.npz: a training run, refused too
    shutil.copy(files['model'], model)
    before = read_tree(str(out))
    flag = '--pretrained' if script == 'visualize' else '--modelfile'
    extra = {'evaluate': ['--split', 'train'],
             'visualize': ['--split', 'train', '--trained', files['model']]
             }.get(script, ['--force'])
    code, err = run_script(script, ['--dataset', 'voc', '--data-dir',
                                    files['voc'], '--out', out, flag, model] +
                           extra, monkeypatch, capsys)
    assert code == 2
    assert 'holds the input %s %s' % (flag, model) in error_line(err)
    assert read_tree(str(out)) == before


# -- 4. make_pseudo_labels: a non-empty --out only with --force -------------
def test_pseudo_labels_refuse_a_non_empty_out_unless_force(
        files, tmp_path, monkeypatch, capsys):
    """--force replaces an earlier run's labels (its manifest.txt), says
    what it would delete, and leaves other files alone."""
    out = str(tmp_path / 'pseudo')
    argv = ['--dataset', 'voc', '--data-dir', files['voc'], '--split',
            'train', '--out', out, '--modelfile', files['model']]
    code, err = run_script('make_pseudo_labels', argv, monkeypatch, capsys)
    assert code == 0, err
    open(os.path.join(out, 'notes.txt'), 'w').write('mine')
    before = read_tree(out)
    code, err = run_script('make_pseudo_labels', argv, monkeypatch, capsys)
    assert code == 2 and error_line(err) == (
        'error: --out %s is not empty; --force would delete what '
        'make_pseudo_labels.py wrote there: ImageSets/Segmentation/train.txt, '
        'JPEGImages/ (4 files), SegmentationClass/ (4 files), '
        'class_names.txt, config.json, manifest.txt, pseudo_labels.json'
        % out)
    assert read_tree(out) == before
    code, err = run_script('make_pseudo_labels', argv[:-1] + [
        str(tmp_path / 'missing.npz'), '--force'], monkeypatch, capsys)
    assert code == 2 and read_tree(out) == before
    code, err = run_script('make_pseudo_labels', argv + ['--force'],
                           monkeypatch, capsys)
    assert code == 0, err
    assert sorted(os.listdir(os.path.join(out, 'SegmentationClass'))) == [
        'train_%03d.png' % i for i in range(4)]
    assert open(os.path.join(out, 'notes.txt')).read() == 'mine'
    assert not os.path.exists(os.path.join(out, outdir.STAGING))


def test_pseudo_labels_never_delete_a_datasets_own_folders(
        files, tmp_path, monkeypatch, capsys):
    """An --out holding a dataset (folders of the tool's names that it did
    not write) is refused with and without --force, byte-identical."""
    out = str(tmp_path / 'other_voc')
    write_voc(out, {'train': 2}, seed=5)
    with open(os.path.join(out, 'class_names.txt'), 'w') as f:
        f.write('background\nmine\n')
    before = read_tree(out)
    argv = ['--dataset', 'voc', '--data-dir', files['voc'], '--split',
            'train', '--out', out, '--modelfile', files['model']]
    for force in ([], ['--force']):
        code, err = run_script('make_pseudo_labels', argv + force,
                               monkeypatch, capsys)
        assert code == 2 and error_line(err) == (
            'error: --out %s holds %s and 5 more, which make_pseudo_labels.py '
            'did not write (not listed in %s); it never deletes such files: '
            'pick another --out' % (out, os.path.join(
                out, 'ImageSets', 'Segmentation', 'train.txt'),
                os.path.join(out, 'manifest.txt')))
        assert read_tree(out) == before


@pytest.mark.parametrize('script', ['make_pseudo_labels', 'evaluate',
                                    'visualize'])
def test_tools_never_write_into_a_training_run(files, tmp_path, monkeypatch,
                                               capsys, script):
    out = tmp_path / 'fcn'
    before = finished_fcn(files, out, monkeypatch, capsys)
    argv = {'make_pseudo_labels': ['--modelfile', files['model'], '--force'],
            'evaluate': ['--modelfile', files['model']],
            'visualize': ['--pretrained', files['model'], '--trained',
                          files['model']]}[script]
    code, err = run_script(script, ['--dataset', 'voc', '--data-dir',
                                    files['voc'], '--split', 'train',
                                    '--out', out] + argv, monkeypatch, capsys)
    assert code == 2
    assert 'holds a training run (model.npz)' in error_line(err)
    assert read_tree(str(out)) == before


# -- 5. one run per --out ----------------------------------------------------
def test_a_second_run_on_a_locked_out_is_refused(files, tmp_path):
    out = str(tmp_path / 'run')

    def train(iterations):
        return [sys.executable, 'train_fcn.py'] + [str(a) for a in fcn_args(
            files['voc'], out, '--iterations', iterations,
            '--snapshot-interval', 2, '--batch-size', 1)]
    command = train(100000)
    first = subprocess.Popen(command, cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list_snapshots(out):
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline, 'no snapshot written'
            time.sleep(0.05)
        second = subprocess.run(command, cwd=ROOT, env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert first.poll() is None           # still training
    finally:
        first.kill()                          # kill -9
        first.wait()
    assert second.returncode == 2
    assert second.stderr.strip() == (
        'error: --out %s is in use by another run (pid %d); wait for it to '
        'end or pick another --out' % (out, first.pid))
    # The kernel released the lock of the killed run: a rerun resumes it.
    last = max(it for it, _ in list_snapshots(out))
    third = subprocess.run(train(last + 1), cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert os.path.exists(os.path.join(out, 'model.npz'))
    assert not os.path.exists(os.path.join(out, outdir.LOCK))


# -- 6. config.json describes the run that happened -------------------------
def test_a_resume_with_other_training_flags_is_refused_naming_them(
        files, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'fcn'
    finished_fcn(files, out, monkeypatch, capsys)
    config = (out / 'config.json').read_bytes()
    code, err = run_script('train_fcn', fcn_args(
        files['voc'], out, '--resume', '--iterations', 3, '--lr', 0.01,
        '--modelfile', files['model'], '--width', 1 / 16.),
        monkeypatch, capsys)
    line = error_line(err)
    assert code == 2
    assert '--lr 0.01 (was 0.001)' in line
    assert '--modelfile %s (was null)' % files['model'] in line
    assert (out / 'config.json').read_bytes() == config
    # Going on for longer is a resume of the same run.
    code, err = run_script('train_fcn', fcn_args(
        files['voc'], out, '--resume', '--iterations', 3),
        monkeypatch, capsys)
    assert code == 0, err
    assert json.load(open(str(out / 'config.json')))['iterations'] == 3


@pytest.mark.parametrize('shorter', [
    ['--resume', '--iterations', 1],
    ['--resume', '--epochs', 0.5],         # 4 images, batch 2: 1 epoch done
    ['--iterations', 1, 'KILLED'],         # snapshot but no model.npz yet
])
def test_a_resume_that_would_train_less_is_refused(
        files, tmp_path, monkeypatch, capsys, shorter):
    """It would train nothing and rewrite config.json to a length that
    never trained."""
    out = tmp_path / 'fcn'
    finished_fcn(files, out, monkeypatch, capsys)
    if 'KILLED' in shorter:
        shorter = shorter[:-1]
        (out / 'model.npz').unlink()
    before = read_tree(str(out))
    argv = fcn_args(files['voc'], out)
    if '--epochs' in shorter:                # --iterations would override
        del argv[argv.index('--iterations'):argv.index('--iterations') + 2]
    code, err = run_script('train_fcn', argv + shorter, monkeypatch, capsys)
    assert code == 2
    flag = '--iterations 1' if '--iterations' in shorter else '--epochs 0.5'
    assert error_line(err) == (
        'error: %s: the run in %s has already trained 2 iterations%s '
        '(snapshot_iter_2.npz); resuming cannot train less: pass a longer '
        '%s, or --force to start over' % (
            flag, out, '' if '--iterations' in shorter else ' (1 epochs)',
            flag.split()[0]))
    assert read_tree(str(out)) == before


def test_evaluate_writes_its_own_out_and_checks_it_first(
        files, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'eval'
    argv = ['--dataset', 'voc', '--data-dir', files['voc'], '--split',
            'train', '--no-attention', '--out', out]
    code, err = run_script('evaluate', argv + ['--modelfile', files['model']],
                           monkeypatch, capsys)
    assert code == 0, err
    assert json.load(open(str(out / 'config.json')))['command'].startswith(
        'evaluate.py')
    code, err = run_script('evaluate', argv + ['--modelfile', files['model']],
                           monkeypatch, capsys)            # its own: fine
    assert code == 0, err
    (out / 'config.json').write_text('{"command": "make_pseudo_labels.py"}')
    before = read_tree(str(out))
    code, err = run_script('evaluate', argv + ['--modelfile',
                                               str(tmp_path / 'no.npz')],
                           monkeypatch, capsys)
    assert code == 2 and ('holds the config.json of a make_pseudo_labels.py '
                          'run') in error_line(err)
    assert read_tree(str(out)) == before


# -- 7. 16-bit images --------------------------------------------------------
def write_gray16(path, values):
    PIL.Image.fromarray(np.asarray(values, np.uint16)).save(path)


def test_16_bit_images_are_scaled_by_their_bit_depth(tmp_path):
    ramp = np.arange(0, 4096, 16).reshape(16, 16)           # 12-bit data
    write_gray16(str(tmp_path / 'twelve.png'), ramp)
    img = read_image(str(tmp_path / 'twelve.png'))
    np.testing.assert_array_equal(img[:, :, 0],
                                  np.round(ramp * 255 / 65535.))
    # Two images one value apart are scaled alike.
    a, b = np.full((4, 4), 7), np.full((4, 4), 7)
    a[0, 0], b[0, 0] = 255, 256
    write_gray16(str(tmp_path / 'a.png'), a)
    write_gray16(str(tmp_path / 'b.png'), b)
    ia, ib = (read_image(str(tmp_path / n))[:, :, 0] for n in ('a.png',
                                                              'b.png'))
    np.testing.assert_array_equal(ia[1:], ib[1:])
    assert ia[0, 0] == ib[0, 0] == 1


@pytest.mark.parametrize('mode', ['I', 'F'])
def test_images_without_a_fixed_range_are_refused(tmp_path, mode):
    path = str(tmp_path / 'x.tif')
    PIL.Image.fromarray(np.ones((4, 4), {'I': np.int32,
                                         'F': np.float32}[mode])).save(path)
    with pytest.raises(DatasetError) as e:
        read_image(path)
    assert str(e.value).startswith(path + ': image of mode %s' % mode)


# -- 8. one-line errors -----------------------------------------------------
@pytest.mark.parametrize('script', ['train_fcn', 'train_classifier',
                                    'train_GAIN', 'evaluate', 'visualize',
                                    'make_pseudo_labels'])
@pytest.mark.parametrize('seed', ['-1', '4294967296'])
def test_seeds_out_of_range(files, tmp_path, monkeypatch, capsys, script,
                            seed):
    model = files['model']
    argv = ['--seed', seed, '--out', tmp_path / 'out'] + (
        ['--pretrained', model, '--trained', model] if script == 'visualize'
        else [] if script == 'train_fcn' else ['--modelfile', model])
    code, err = run_script(script, argv, monkeypatch, capsys)
    assert code == 2
    assert 'argument --seed: must be in 0..4294967295, got %s' % seed in \
        error_line(err)
    assert not (tmp_path / 'out').exists()


def test_demo_seeds_out_of_range(monkeypatch, capsys):
    import demo
    monkeypatch.setattr(sys, 'argv', ['demo.py', '--seeds', '0', '-1'])
    with pytest.raises(SystemExit) as e:
        demo.main()
    assert e.value.code == 2
    assert 'must be in 0..4294967295, got -1' in capsys.readouterr().err


@pytest.mark.parametrize('flags,message', [
    (['--ext-images', 'nan'], '--ext-images nan: must be'),
    (['--ext-images', 'inf'], '--ext-images inf: must be'),
    (['--am-warmup', 'nane'], "warm-up must be a finite number >= 0, got "
                              "'nane'"),
    (['--ext-warmup', 'infe'], 'warm-up must be a finite number'),
])
def test_gain_flags_that_are_not_numbers(files, tmp_path, monkeypatch,
                                         capsys, flags, message):
    code, err = run_script('train_GAIN', gain_args(files, tmp_path / 'g',
                                                   *flags),
                           monkeypatch, capsys)
    assert code == 2 and message in error_line(err)


def test_a_read_only_out_is_refused_before_training(files, tmp_path,
                                                    monkeypatch, capsys):
    out = tmp_path / 'ro'
    out.mkdir()
    out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.geteuid() == 0:     # root writes anyway: the kernel's answer
        real_open = os.open

        def read_only(path, *args, **kwargs):
            if str(path).startswith(str(out)):
                raise PermissionError(errno.EACCES, 'Permission denied',
                                      path)
            return real_open(path, *args, **kwargs)
        monkeypatch.setattr(outdir.os, 'open', read_only)
    code, err = run_script('train_fcn', fcn_args(files['voc'], out),
                           monkeypatch, capsys)
    monkeypatch.undo()
    assert code == 2
    assert error_line(err) == ('error: --out %s is not writable (Permission '
                               'denied)' % out)
    assert os.listdir(str(out)) == []


def test_a_full_disk_stops_training_and_keeps_older_snapshots(
        tmp_path, monkeypatch):
    import runtime.snapshots
    real_savez = np.savez

    def savez(f, **arrays):
        if int(arrays['updater/iteration']) == 6:
            f.write(b'partial')
            raise OSError(errno.ENOSPC, 'No space left on device')
        real_savez(f, **arrays)
    monkeypatch.setattr(runtime.snapshots.np, 'savez', savez)
    trainer, model = toy_trainer(tmp_path, iterations=9)
    with pytest.raises(WriteFailed) as e:
        finish(trainer, model, str(tmp_path))
    message = str(e.value)
    assert 'No space left on device' in message and '\n' not in message
    assert ('the snapshots written before are kept (newest: %s)'
            % (tmp_path / 'snapshot_iter_3.npz')) in message
    assert list_snapshots(str(tmp_path)) == [
        (3, str(tmp_path / 'snapshot_iter_3.npz'))]
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('tmp')]
    read_snapshot(str(tmp_path / 'snapshot_iter_3.npz'))


@pytest.mark.parametrize('script', ['evaluate', 'visualize',
                                    'make_pseudo_labels'])
def test_an_out_that_is_a_file_is_refused_before_the_work(
        files, tmp_path, monkeypatch, capsys, script):
    out = tmp_path / 'out'
    out.write_text('keep')
    model = files['model']
    if script != 'make_pseudo_labels':   # checked before any model is read
        model = str(tmp_path / 'missing.npz')
    argv = {'evaluate': ['--modelfile', model],
            'visualize': ['--pretrained', model, '--trained', model],
            'make_pseudo_labels': ['--modelfile', model]}[script]
    code, err = run_script(script, ['--dataset', 'voc', '--data-dir',
                                    files['voc'], '--split', 'train',
                                    '--out', out] + argv, monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == 'error: --out %s is a file, not a directory' \
        % out
    assert out.read_text() == 'keep'


def test_a_batch_that_cannot_fit_in_memory_is_refused(files, tmp_path,
                                                      monkeypatch, capsys):
    import training.memory
    monkeypatch.setattr(training.memory, 'available_memory',
                        lambda device: 10 ** 5)
    out = tmp_path / 'fcn'
    code, err = run_script('train_fcn', fcn_args(files['voc'], out),
                           monkeypatch, capsys)
    line = error_line(err)
    assert code == 2
    assert line.startswith('error: --batch-size 2: a training step on 32x40 '
                           'images needs at least ')
    assert 'use a smaller --batch-size' in line
    assert not out.exists()


def test_out_of_memory_in_a_step_names_the_batch_size(files, tmp_path,
                                                      monkeypatch, capsys):
    import chainer

    def update_core(self):
        raise MemoryError()
    monkeypatch.setattr(chainer.training.StandardUpdater, 'update_core',
                        update_core)
    code, err = run_script('train_fcn', fcn_args(files['voc'],
                                                 tmp_path / 'fcn'),
                           monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == ('error: out of memory in a training step on '
                               'images of 32x40 with --batch-size 2; use a '
                               'smaller --batch-size')


# -- 9. temporaries of a killed write ----------------------------------------
def test_stale_temporaries_are_removed_at_start(files, tmp_path,
                                                monkeypatch, capsys):
    out = tmp_path / 'fcn'
    finished_fcn(files, out, monkeypatch, capsys)
    stale = [out / 'tmpsnapshot_iter_4.npzab_c1234' / 'snapshot_iter_4.npz',
             out / 'tmpq9_x8z7w.npz.tmp', out / 'log1a2b3c4d' / 'log.json',
             out / 'config.json.tmp']
    kept = [out / 'tmpmine' / 'data.txt', out / 'notes.tmp',
            out / 'log_archive' / 'old.txt']
    for path in stale + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b'x' * 10)
    code, err = run_script('train_fcn', fcn_args(files['voc'], out,
                                                 '--resume', '--iterations',
                                                 3), monkeypatch, capsys)
    assert code == 0, err
    assert not any(p.exists() for p in stale)
    assert not (out / 'tmpsnapshot_iter_4.npzab_c1234').exists()
    assert not (out / 'log1a2b3c4d').exists()
    assert all(p.read_bytes() == b'x' * 10 for p in kept)


# -- 10. small ones ----------------------------------------------------------
@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o027, 0o640)])
def test_model_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        save_model(str(tmp_path / 'model.npz'), FCN8s(3, 1 / 16.))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(tmp_path / 'model.npz')).st_mode) == mode


def test_a_split_list_with_a_byte_order_mark(tmp_path):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 2})
    split = os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt')
    with open(split, 'w', encoding='utf-8-sig') as f:
        f.write('train_000\ntrain_001\n')
    dataset = VOCSegmentation(root, 'train')
    assert dataset.ids == ['train_000', 'train_001']
    dataset[0]


def test_a_deeplab_train_aug_list(tmp_path):
    """Both label folders exist (VOC2012 plus SegmentationClassAug): the
    label named on the line is used."""
    root = str(tmp_path / 'VOC')
    written = write_voc(root, {'train': 2})
    shutil.copytree(os.path.join(root, 'SegmentationClass'),
                    os.path.join(root, 'SegmentationClassAug'))
    os.remove(os.path.join(root, 'SegmentationClass', 'train_001.png'))
    with open(os.path.join(root, 'train_aug.txt'), 'w') as f:
        f.write(''.join('/JPEGImages/%s.jpg /SegmentationClassAug/%s.png\n'
                        % (i, i) for i in sorted(written)))
    dataset = VOCSegmentation(root, 'train_aug')
    assert dataset.ids == ['train_000', 'train_001']
    assert dataset.label_files[1] == os.path.join(
        root, 'SegmentationClassAug', 'train_001.png')
    lbl = dataset[1][1]
    np.testing.assert_array_equal(
        lbl, np.where(written['train_001'][1] == 255, -1,
                      written['train_001'][1]))


def test_a_text_file_is_not_a_model_file(files, tmp_path, monkeypatch,
                                         capsys):
    path = tmp_path / 'model.npz'
    path.write_text('hello\n')
    code, err = run_script('train_GAIN', gain_args(files, tmp_path / 'g') +
                           ['--modelfile', path], monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == ('error: %s: not a model file (not an npz '
                               'archive)' % path)


@pytest.mark.parametrize('where', ['before-training', 'in-the-loop'])
def test_a_failed_run_leaves_no_out_it_created(files, tmp_path, monkeypatch,
                                               capsys, where):
    voc = str(tmp_path / 'VOC')
    shutil.copytree(files['voc'], voc)
    if where == 'before-training':
        shutil.rmtree(os.path.join(voc, 'SegmentationClass'))
    else:
        open(os.path.join(voc, 'JPEGImages', 'train_001.jpg'), 'wb').write(
            b'broken')
    out = tmp_path / 'new' / 'run'
    code, err = run_script('train_fcn', fcn_args(voc, out,
                                                 '--snapshot-interval', 5),
                           monkeypatch, capsys)
    assert code == 2, err
    assert not (tmp_path / 'new').exists()
