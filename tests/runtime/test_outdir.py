"""runtime/outdir.py: every write under --out, a finished run kept."""
import errno
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import time

import pytest

from helpers import (ENV, ROOT, error_line, fcn_args, fcn_batch4_args,
                     finished_fcn, gain_args, read_tree, run_script,
                     toy_trainer, write_voc)
from models.io import load_model
from runtime import outdir
from runtime.errors import OutputError
from training.extensions.snapshots import list_snapshots


def victim(tmp_path, kind):
    """An outside file (``'file'``) or directory holding one (``'dir'``)
    for a link to point at."""
    path = tmp_path / ('victim_' + kind)
    if kind == 'dir':
        path.mkdir()
        (path / 'keep.txt').write_text('DATA\n')
    else:
        path.write_text('DATA\n')
    return path


def tree(path):
    return read_tree(str(path)) if path.is_dir() else path.read_bytes()


def command(script, files, out):
    common = ['--dataset', 'voc', '--data-dir', files['voc'], '--out', out]
    return common + {
        'train_GAIN': ['--modelfile', files['model'], '--iterations', 2,
                       '--batch-size', 2, '--attention-interval', 1,
                       '--attention-val-images', 2, '--snapshot-interval', 1],
        'train_classifier': ['--modelfile', files['model'], '--iterations',
                             2, '--batch-size', 2, '--val-split', ''],
        'make_pseudo_labels': ['--modelfile', files['model'], '--split',
                               'train'],
        'evaluate': ['--modelfile', files['model'], '--split', 'val'],
        'visualize': ['--pretrained', files['model'], '--trained',
                      files['model'], '--split', 'val', '--save-cams'],
    }[script]


# Every fixed name a tool writes in --out, planted as a link to an outside
# file or directory (the kind a careless write would go through).
PLANTED = [
    ('train_GAIN', '.lock', 'file'), ('train_GAIN', '.replaced', 'dir'),
    ('train_GAIN', 'log', 'dir'), ('train_GAIN', 'log', 'file'),
    ('train_GAIN', 'attention', 'dir'), ('train_GAIN', 'config.json', 'file'),
    ('train_GAIN', 'model.npz', 'file'), ('train_GAIN', 'loss.png', 'file'),
    ('train_GAIN', 'attention_val.png', 'file'),
    ('train_GAIN', 'ext_images.txt', 'file'),
    ('train_GAIN', 'snapshot_iter_1.npz', 'dir'),
    ('train_classifier', '.lock', 'file'),
    ('train_classifier', '.replaced', 'dir'),
    ('make_pseudo_labels', '.lock', 'file'),
    ('make_pseudo_labels', '.replaced', 'dir'),
    ('make_pseudo_labels', 'SegmentationClass', 'dir'),
    ('make_pseudo_labels', 'JPEGImages', 'dir'),
    ('make_pseudo_labels', 'ImageSets', 'dir'),
    ('make_pseudo_labels', 'class_names.txt', 'file'),
    ('make_pseudo_labels', 'manifest.txt', 'file'),
    ('make_pseudo_labels', 'config.json', 'file'),
    ('make_pseudo_labels', 'pseudo_labels.json', 'file'),
    ('evaluate', 'config.json', 'file'), ('evaluate', 'metrics.json', 'file'),
    ('evaluate', 'metrics.md', 'file'),
    ('evaluate', 'attention_miou.png', 'file'),
    ('visualize', 'overview.png', 'file'), ('visualize', 'cams', 'dir'),
    ('visualize', 'val_000.png', 'file'),
]


@pytest.mark.parametrize('script,name,kind', PLANTED)
def test_a_planted_link_is_refused_and_its_target_kept(
        files, tmp_path, monkeypatch, capsys, script, name, kind):
    out = tmp_path / 'out'
    out.mkdir()
    target = victim(tmp_path, kind)
    before = tree(target)
    os.symlink(str(target), str(out / name))
    argv = command(script, files, out)
    if script == 'make_pseudo_labels':
        argv.append('--force')
    code, err = run_script(script, argv, monkeypatch, capsys)
    assert code == 2, err
    assert error_line(err) == (
        'error: %s is a symbolic link; refusing to write through it: remove '
        'it or pick another --out' % (out / name))
    assert tree(target) == before
    assert os.path.islink(str(out / name))


@pytest.mark.parametrize('name,message', [
    ('log', 'is a directory where this tool writes a file'),
    ('model.npz', 'is a directory where this tool writes a file'),
    ('attention', 'is a file where this tool writes a directory'),
    ('.lock', 'is a FIFO where this tool writes a file'),
])
def test_an_entry_of_the_wrong_kind_is_refused_before_training(
        files, tmp_path, monkeypatch, capsys, name, message):
    """chainer's LogReport would move log.json into a ``log`` directory."""
    out = tmp_path / 'out'
    out.mkdir()
    if message.startswith('is a directory'):
        (out / name).mkdir()
    elif 'FIFO' in message:
        os.mkfifo(str(out / name))
    else:
        (out / name).write_text('x')
    before = os.lstat(str(out / name))
    code, err = run_script('train_GAIN', command('train_GAIN', files, out),
                           monkeypatch, capsys)
    assert code == 2
    assert error_line(err).startswith('error: %s %s' % (out / name, message))
    assert sorted(os.listdir(str(out))) == [name]
    after = os.lstat(str(out / name))
    assert (after.st_ino, after.st_mode, after.st_size) == (
        before.st_ino, before.st_mode, before.st_size)


def test_a_snapshot_name_planted_during_training_is_refused(tmp_path):
    """The snapshot writer checks its name when it writes (chainer's move
    would go into a directory link)."""
    target = victim(tmp_path, 'dir')
    before = tree(target)
    out = tmp_path / 'run'
    trainer, _ = toy_trainer(out, iterations=6)

    def plant(trainer):
        if trainer.updater.iteration == 2:
            os.symlink(str(target), str(out / 'snapshot_iter_3.npz'))
    trainer.extend(plant, trigger=(1, 'iteration'))
    with pytest.raises(OutputError, match='snapshot_iter_3.npz is a symbolic '
                       'link'):
        trainer.run(show_loop_exception_msg=False)
    assert tree(target) == before


def own_images(tmp_path):
    folder = tmp_path / 'photos'
    write_voc(str(tmp_path / 'v'), {'x': 2}, n_class=21)
    shutil.copytree(str(tmp_path / 'v' / 'JPEGImages'), str(folder))
    return folder


@pytest.mark.parametrize('where', ['is', 'inside', 'holds'])
def test_visualize_never_writes_into_its_images(files, tmp_path,
                                                monkeypatch, capsys, where):
    folder = own_images(tmp_path)
    before = read_tree(str(tmp_path))
    out = {'is': folder, 'inside': folder / 'vis', 'holds': tmp_path}[where]
    code, err = run_script('visualize', [
        '--images', folder, '--out', out, '--pretrained', files['model'],
        '--trained', files['model']], monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == 'error: --out %s %s the input --images %s; ' \
        'pick another --out' % (out, 'lies inside' if where == 'inside'
                                else where, folder)
    assert read_tree(str(tmp_path)) == before


@pytest.mark.parametrize('script', ['visualize', 'evaluate',
                                    'make_pseudo_labels'])
@pytest.mark.parametrize('where', ['SegmentationClass', '.'])
def test_no_tool_writes_into_its_dataset(files, tmp_path, monkeypatch,
                                         capsys, script, where):
    voc = str(tmp_path / 'VOC')
    shutil.copytree(files['voc'], voc)
    before = read_tree(voc)
    out = os.path.normpath(os.path.join(voc, where))
    argv = command(script, dict(files, voc=voc), out)
    if script == 'make_pseudo_labels':
        argv.append('--force')
    code, err = run_script(script, argv, monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == 'error: --out %s %s the input --data-dir %s; ' \
        'pick another --out' % (out, 'is' if where == '.' else 'lies inside',
                                voc)
    assert read_tree(voc) == before


def test_finished_run_is_kept_unless_force(files, tmp_path, monkeypatch,
                                           capsys):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'model.npz').write_bytes(b'finished')
    code, err = run_script('train_fcn', fcn_batch4_args(files['voc'], out),
                           monkeypatch, capsys)
    assert code == 2 and 'already holds a finished run' in error_line(err)
    assert (out / 'model.npz').read_bytes() == b'finished'
    code, err = run_script('train_fcn', fcn_batch4_args(files['voc'], out,
                                                        '--force'),
                           monkeypatch, capsys)
    assert code == 0, err
    load_model(str(out / 'model.npz'))
    # --resume continues a finished run, here to more iterations.
    code, err = run_script('train_fcn', fcn_batch4_args(
        files['voc'], out, '--resume', '--iterations', 3),
        monkeypatch, capsys)
    assert code == 0, err
    assert 'resuming from %s (iteration 2)' % os.path.join(
        str(out), 'snapshot_iter_2.npz') in err
    assert os.path.exists(str(out / 'snapshot_iter_3.npz'))


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
    claim.lock.release()                # what kill -9 leaves behind
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
        'class_names.txt, config.json, manifest.txt, preview.png, '
        'pseudo_labels.json' % out)
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


def test_out_is_a_file(files, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'out'
    out.write_text('')
    code, err = run_script('train_fcn', fcn_batch4_args(files['voc'], out),
                           monkeypatch, capsys)
    assert code == 2 and 'is a file' in error_line(err)


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


def test_stale_temporaries_are_removed_at_start(files, tmp_path,
                                                monkeypatch, capsys):
    out = tmp_path / 'fcn'
    finished_fcn(files, out, monkeypatch, capsys)
    stale = [out / '.tmp-snapshot_iter_4.npz-0a1b2c3d',
             out / '.tmp-log-9f8e7d6c',
             out / 'attention' / '.tmp-iter_000002.png-00ff00ff',
             out / 'tensorboard' / '.tmp-x-12345678']
    kept = [out / '.tmp-mine', out / 'notes.tmp', out / 'sub' /
            '.tmp-log-9f8e7d6c', out / '.tmp-log-9f8e7d6c0']
    for path in stale + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b'x' * 10)
    code, err = run_script('train_fcn', fcn_args(files['voc'], out,
                                                 '--resume', '--iterations',
                                                 3), monkeypatch, capsys)
    assert code == 0, err
    assert not any(p.exists() for p in stale)
    assert all(p.read_bytes() == b'x' * 10 for p in kept)


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


def other_tools_out(script, files, out, monkeypatch, capsys):
    """A finished run of ``script`` (evaluate or make_pseudo_labels) in
    ``out``; returns its files."""
    argv = ['--dataset', 'voc', '--data-dir', files['voc'], '--out', out,
            '--modelfile', files['model']] + {
        'evaluate': ['--split', 'val', '--no-attention'],
        'make_pseudo_labels': ['--split', 'train']}[script]
    code, err = run_script(script, argv, monkeypatch, capsys)
    assert code == 0, err
    return read_tree(str(out))


@pytest.mark.parametrize('force', [[], ['--force']])
@pytest.mark.parametrize('owner', ['evaluate', 'make_pseudo_labels'])
def test_a_training_run_never_replaces_another_tools_out(
        files, tmp_path, monkeypatch, capsys, owner, force):
    """train_fcn.py given an evaluation's or a pseudo-label dataset's --out
    replaced that tool's config.json (and with --force moved its files
    aside): refused, naming the owner, with or without --force."""
    out = tmp_path / 'other'
    before = other_tools_out(owner, files, out, monkeypatch, capsys)
    code, err = run_script('train_fcn', fcn_batch4_args(files['voc'], out,
                                                        *force),
                           monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == (
        "error: --out %s holds the config.json of a %s.py run; train_fcn.py "
        "never replaces another tool's files: pick another --out"
        % (out, owner))
    assert read_tree(str(out)) == before


@pytest.mark.parametrize('planted', ['fifo', 'link-to-dev-zero'])
def test_evaluate_checks_its_config_json_before_reading_it(
        files, tmp_path, planted):
    """OUT/config.json was read before being checked: a FIFO there hung
    evaluate.py, a link to /dev/zero made it read without end."""
    out = tmp_path / 'eval'
    out.mkdir()
    config = out / 'config.json'
    if planted == 'fifo':
        os.mkfifo(str(config))
    else:
        os.symlink('/dev/zero', str(config))
    try:
        proc = subprocess.run(
            [sys.executable, 'evaluate.py', '--dataset', 'voc', '--data-dir',
             files['voc'], '--split', 'val', '--no-attention', '--modelfile',
             files['model'], '--out', str(out)], cwd=ROOT, env=ENV,
            capture_output=True, text=True, timeout=180,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (
                4 << 30, 4 << 30)))
    except subprocess.TimeoutExpired:
        pytest.fail('evaluate.py hangs on %s' % planted)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        'error: %s is a FIFO where this tool writes a file; remove it or '
        'pick another --out' % config if planted == 'fifo' else
        'error: %s is a symbolic link; refusing to write through it: remove '
        'it or pick another --out' % config)
    assert os.listdir(str(out)) == ['config.json']


KILLER = '''
import os, runpy, sys
import visualizations
from runtime.files import atomic_write
real, drawn = visualizations.save_figure, []

def save_figure(fig, path, *args, **kwargs):
    if os.path.basename(os.path.dirname(path)) == 'attention':
        drawn.append(path)
        if len(drawn) == 2:  # kill -9 in the middle of the second picture
            writing = atomic_write(path, 'wb')
            writing.__enter__().write(b'half a PNG')
            os._exit(137)
    return real(fig, path, *args, **kwargs)

visualizations.save_figure = save_figure
sys.argv = ['train_GAIN.py'] + sys.argv[1:]
runpy.run_path('train_GAIN.py', run_name='__main__')
'''


def test_a_run_killed_during_force_leaves_nothing_a_rerun_cannot_remove(
        files, tmp_path, monkeypatch, capsys):
    """kill -9 of a --force run while it drew an attention picture, after
    its first snapshot, left that picture's temporary file
    (``attention/*.png.tmp``) for good; the next claim of --out removes the
    temporaries of every directory the tool writes."""
    out = tmp_path / 'gain'
    argv = [str(a) for a in gain_args(files, out, '--iterations', 3)]
    code, err = run_script('train_GAIN', argv, monkeypatch, capsys)
    assert code == 0, err
    proc = subprocess.run([sys.executable, '-c', KILLER] + argv + [
        '--force'], cwd=ROOT, env=ENV, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 137, proc.stderr
    assert [n for n in read_tree(str(out)) if 'tmp' in n]   # left behind
    code, err = run_script('train_GAIN', argv, monkeypatch, capsys)
    assert code == 0 and 'resuming from' in err, err
    assert not [n for n in read_tree(str(out)) if 'tmp' in n]
    assert sorted(os.listdir(str(out / 'attention'))) == [
        'iter_%06d.png' % i for i in (1, 2, 3)]


def gain_with_a_broken_image(files, tmp_path, out, *extra):
    """train_GAIN on a copy of the VOC dir whose second training image is
    truncated: the run fails in its first steps, after the pictures drawn
    before the first update (attention_val.png...)."""
    voc = str(tmp_path / 'VOC')
    if not os.path.exists(voc):
        shutil.copytree(files['voc'], voc)
        data = open(os.path.join(voc, 'JPEGImages', 'train_001.jpg'),
                    'rb').read()
        open(os.path.join(voc, 'JPEGImages', 'train_001.jpg'), 'wb').write(
            data[:len(data) // 2])
    return ['--dataset', 'voc', '--data-dir', voc, '--out', out,
            '--modelfile', files['model'], '--iterations', 2,
            '--batch-size', 2, '--attention-val-images', 2] + list(extra)


def test_a_failed_first_run_leaves_nothing_behind(files, tmp_path,
                                                  monkeypatch, capsys):
    """A first GAIN run that failed before its first snapshot left
    attention_val.png (not among the names --force moved aside); now what
    a run writes and --force moves aside are the same set."""
    out = tmp_path / 'runs' / 'gain'
    code, err = run_script('train_GAIN', gain_with_a_broken_image(
        files, tmp_path, out), monkeypatch, capsys)
    assert code == 2 and 'train_001.jpg' in error_line(err)
    assert not (tmp_path / 'runs').exists()
    # --force over a finished run that fails the same way gives it back
    # whole, its attention_val.png included
    code, err = run_script('train_GAIN', gain_args(files, out, '--val-split',
                                                   'val'),
                           monkeypatch, capsys)
    assert code == 0, err
    before = read_tree(str(out))
    assert 'attention_val.png' in before
    code, err = run_script('train_GAIN', gain_with_a_broken_image(
        files, tmp_path, out, '--force'), monkeypatch, capsys)
    assert code == 2 and read_tree(str(out)) == before
