"""train_fcn.py: images with a mask only, and its validation terms."""
import os

from helpers import printed_next, run_script, run_script_output


def test_train_fcn_draws_its_validation_terms(files, tmp_path, monkeypatch,
                                              capsys, figures):
    code, out, err = run_script_output('train_fcn', [
        '--dataset', 'voc', '--data-dir', files['voc'], '--out',
        tmp_path / 'fcn', '--iterations', 2, '--batch-size', 2],
        monkeypatch, capsys)
    assert code == 0, err
    model, nexts = printed_next(out)
    assert [w[1:6] for w in nexts] == [['train_classifier.py', '--modelfile',
                                        model[0], '--out',
                                        str(tmp_path / 'classifier')]]
    panels, fig = figures['train_fcn.py: FCN8s segmentation']
    lines = {p.title.split(':')[0]: [l.get_label() for l in ax.lines]
             for p, ax in zip(panels, fig.axes)}
    assert lines['L_seg'] == lines['L_cl'] == ['train', 'validation']


def test_train_fcn_takes_only_masked_images(weak_voc, tmp_path, monkeypatch,
                                            capsys):
    root, _ = weak_voc
    common = ['--dataset', 'voc', '--data-dir', root, '--iterations', 1,
              '--batch-size', 2]
    code, err = run_script('train_fcn', common + [
        '--out', str(tmp_path / 'fcn')], monkeypatch, capsys)
    assert code == 0, err
    assert "--split 'train': using the 3 of its 7 images that have a mask" \
        in err
    assert "--val-split 'val': using the 2 of its 4 images" in err
    code, err = run_script('train_fcn', common + [
        '--voc-layout', 'classification', '--out', str(tmp_path / 'none')],
        monkeypatch, capsys)
    assert code == 2 and 'none of its 7 images has a mask' in err
    assert not os.path.exists(str(tmp_path / 'none'))
