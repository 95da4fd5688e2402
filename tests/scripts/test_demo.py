"""demo.py: its flags."""
import sys

import pytest


def test_demo_seeds_out_of_range(monkeypatch, capsys):
    import demo
    monkeypatch.setattr(sys, 'argv', ['demo.py', '--seeds', '0', '-1'])
    with pytest.raises(SystemExit) as e:
        demo.main()
    assert e.value.code == 2
    assert 'must be in 0..4294967295, got -1' in capsys.readouterr().err
