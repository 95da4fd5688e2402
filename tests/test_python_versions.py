"""Supported interpreters: chainer imports on 3.11 and 3.12 from scripts,
the packages and a user's own code; the Makefile picks a supported Python
and refuses others in one line."""
import os
import shutil
import site
import subprocess
import sys

import pytest

from helpers import ROOT


def python(code, cwd, *flags):
    return subprocess.run([sys.executable] + list(flags) + ['-c', code],
                          cwd=str(cwd), capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=''))


def test_user_code_imports_chainer_in_the_venv(tmp_path):
    """A user's own script outside the project, run by the venv's Python
    (the start-up hook of make setup)."""
    proc = python('import chainer, chainermn, fcn.utils; '
                  'print(chainer.__version__)', tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '7.8.1' and proc.stderr == ''


def test_packages_import_chainer_without_the_hook(tmp_path):
    """``from models import FCN8s`` works on an interpreter without the
    hook (``-S``: no .pth files), e.g. dependencies installed by hand."""
    path = [ROOT] + site.getsitepackages()
    proc = python('import sys; sys.path[:0] = %r; '
                  'assert "chainer_compat" not in sys.modules; '
                  'from models import FCN8s; import chainer; '
                  'FCN8s(3, 1 / 16.)' % path, tmp_path, '-S')
    assert proc.returncode == 0, proc.stderr


def fake_python(directory, name, version):
    """An executable that reports ``version`` and records any other call
    in ``directory/called-<name>``."""
    path = os.path.join(str(directory), name)
    with open(path, 'w') as f:
        f.write('#!/bin/sh\ncase "$*" in *python_version*) echo %s;; '
                '*) echo "$@" > "%s/called-%s"; exit 1;; esac\n'
                % (version, directory, name))
    os.chmod(path, 0o755)
    return path


# What an outer make (``make test PYTHON=...``) passes to the commands it
# runs: its flags and command-line variables, also as environment variables.
OUTER_MAKE = ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES', 'PYTHON',
              'VENV', 'GPU', 'DEVICE', 'MPI', 'DEMO_ARGS', 'BENCH_ARGS',
              'TEST_WORKERS')


def make_environment(**env):
    """The environment of a make under test: this process's without what
    an outer make passed down, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in OUTER_MAKE}
    return dict(clean, **env)


@pytest.fixture
def make():
    if shutil.which('make') is None:
        pytest.skip('no make')
    return lambda args, **env: subprocess.run(
        ['make', '--no-print-directory', '-C', ROOT] + args,
        capture_output=True, text=True, env=make_environment(**env))


@pytest.mark.parametrize('version', ['3.13.0', '3.10.13'])
def test_make_refuses_an_unsupported_python_in_one_line(tmp_path, make,
                                                        version):
    fake = fake_python(tmp_path, 'python3', version)
    proc = make(['setup', 'PYTHON=' + fake, 'VENV=%s/venv' % tmp_path])
    assert proc.returncode != 0
    assert proc.stderr.count('\n') == 1, proc.stderr
    assert 'is Python %s' % version in proc.stderr
    assert 'Python 3.11 or 3.12 only' in proc.stderr
    assert 'make setup PYTHON=python3.12' in proc.stderr
    assert not os.path.exists(str(tmp_path / 'called-python3'))


@pytest.mark.parametrize('outer_make', [False, True])
def test_make_picks_a_supported_python_when_python3_is_not(
        tmp_path, make, monkeypatch, outer_make):
    """Also when the suite itself runs under ``make test PYTHON=X``: the
    make under test does not inherit X."""
    if outer_make:
        outer = fake_python(tmp_path, 'outer-python', '3.11.7')
        monkeypatch.setenv('MAKEFLAGS', ' -- PYTHON=%s' % outer)
        monkeypatch.setenv('MAKELEVEL', '1')
        monkeypatch.setenv('PYTHON', outer)
    fake_python(tmp_path, 'python3', '3.13.0')
    fake_python(tmp_path, 'python3.12', '3.12.1')
    venv = str(tmp_path / 'venv')
    proc = make(['setup', 'VENV=' + venv],
                PATH='%s:%s' % (tmp_path, os.environ['PATH']))
    assert proc.returncode != 0      # the fake makes no venv
    assert not os.path.exists(str(tmp_path / 'called-python3'))
    assert not os.path.exists(str(tmp_path / 'called-outer-python'))
    with open(str(tmp_path / 'called-python3.12')) as f:
        assert f.read().split() == ['-m', 'venv', venv]
