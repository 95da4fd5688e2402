"""Every write stays under --out, also through a symbolic link planted
there (runtime.outdir), and no tool writes into what it reads: each
planted link or misplaced entry is a one-line refusal naming it, and what
it points to is byte-identical afterwards."""
import os
import shutil

import pytest

from helpers import error_line, read_tree, run_script, write_voc
from runtime import outdir
from runtime.errors import OutputError
from test_reliability import toy_trainer


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


def test_output_path_checks_every_entry_without_following_links(tmp_path):
    out = tmp_path / 'out'
    (out / 'cams').mkdir(parents=True)
    target = victim(tmp_path, 'dir')
    os.symlink(str(target), str(out / 'cams' / 'sub'))
    os.symlink(str(target / 'keep.txt'), str(out / 'x.png'))
    (out / 'plain').write_text('')
    for names, message in [
            (('cams', 'sub', 'a.npz'), 'cams/sub is a symbolic link'),
            (('x.png',), 'x.png is a symbolic link'),
            (('plain', 'a.png'), 'plain is a file where this tool writes a '
             'directory'),
            (('cams',), 'cams is a directory where this tool writes a '
             'file')]:
        with pytest.raises(OutputError, match=message):
            outdir.output_path(str(out), *names)
    assert read_tree(str(target)) == {'keep.txt': b'DATA\n'}
    path = outdir.output_path(str(out), 'attention', directory=True)
    assert os.path.isdir(path) and not os.path.islink(path)


# -- no tool writes into what it reads ---------------------------------------
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
