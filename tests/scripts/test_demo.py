"""demo.py: its flags."""
import sys
from types import SimpleNamespace

import pytest


def test_demo_seeds_out_of_range(monkeypatch, capsys):
    import demo
    monkeypatch.setattr(sys, 'argv', ['demo.py', '--seeds', '0', '-1'])
    with pytest.raises(SystemExit) as e:
        demo.main()
    assert e.value.code == 2
    assert 'must be in 0..4294967295, got -1' in capsys.readouterr().err


class _Run(object):
    """The part of pipeline.orchestrator.Pipeline that demo.pipeline uses,
    recording each job's command instead of running it."""
    data_dir = 'data'

    def job(self, name, script, args, title=None):
        return SimpleNamespace(name=name, script=script, args=list(args),
                               out='runs/' + name,
                               path='runs/%s/model.npz' % name)

    def evaluation(self, name, split, models, *extra, title=None):
        return self.job(name, 'evaluate.py', [split] + list(extra))


def _modelfile(job):
    return job.args[job.args.index('--modelfile') + 1]


@pytest.mark.parametrize('shipped', [True, False])
def test_the_classifier_starts_from_the_stand_in_of_the_shipped_recipe(
        shipped):
    """--retrain-fcn trains the stand-in as the shipped file was trained
    (models/pretrained/README.md): a second run of the same flags from the
    first run's model; without it the shipped file is taken."""
    import demo
    from pipeline.presets import PRESETS
    args = SimpleNamespace(dtype='float32', stand_in='shipped.npz',
                           seeds=[0])
    stages, models, _ = demo.pipeline(_Run(), args, PRESETS['cpu'], shipped)
    fcn = [j for stage in stages for j in stage
           if j.script == 'train_fcn.py']
    if shipped:
        assert fcn == []
        assert _modelfile(models['classifier']) == 'shipped.npz'
        return
    first, second = fcn
    assert stages[:2] == [[first], [second]]
    assert second.args == ['--modelfile', first.path] + first.args
    assert '--modelfile' not in first.args
    assert _modelfile(models['classifier']) == second.path
