#!/usr/bin/env python
"""A screenshot of TensorBoard over a short real run (``make
tensorboard-screenshot``, media/tensorboard.png): train_classifier.py on
the shipped stand-in FCN8s, then train_GAIN.py on that classifier (shapes,
a few minutes on 2 CPU cores), a TensorBoard server on 127.0.0.1 over both,
and headless Chromium's picture of its Time Series dashboard: the attention
pictures, the loss terms and the validation mAP, pointing game and
attention mIoU of both runs. Needs Chromium (Debian: ``apt-get install
chromium``).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from runtime import cli, flags  # NOQA: E402
from runtime.errors import UsageError  # NOQA: E402
from bench import tensorboard_server as tensorboard  # NOQA: E402
from pipeline.presets import STAND_IN  # NOQA: E402

# the cards shown
TAGS = ('^attention$|^main/(loss|am)$|'
        '^validation/main/(map|pointing|attention_miou)$')
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-quic', '--no-first-run',
                  '--disable-background-networking',
                  '--disable-component-update', '--disable-sync',
                  '--no-proxy-server', '--hide-scrollbars']


def train(script, out, device, argv):
    """Run a training script into ``out`` (``--force``), its output into
    ``out.txt``."""
    print('== %s --out %s' % (script, out), flush=True)
    command = [sys.executable, os.path.join(ROOT, script), '--out', out,
               '--device', device, '--force'] + [str(a) for a in argv]
    with open(out + '.txt', 'w') as log:
        if subprocess.run(command, cwd=ROOT, stdout=log,
                          stderr=subprocess.STDOUT).returncode:
            raise UsageError('%s failed; see %s.txt' % (script, out))


def wait_for_runs(url, runs, deadline=120):
    """Until the server shows scalars under each of ``runs`` (prefixes)
    and GAIN's attention pictures."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        scalars = tensorboard.fetch(url, '/data/plugin/scalars/tags')
        images = tensorboard.fetch(url, '/data/plugin/images/tags')
        if all(any(n.startswith(r) for n in scalars) for r in runs) and images:
            return
        time.sleep(0.5)
    raise UsageError('TensorBoard did not show the runs within %d s'
                     % deadline)


def screenshot(chromium, url, path, size):
    """Chromium's picture of ``url`` (a fresh profile) into ``path``."""
    profile = tempfile.mkdtemp(prefix='chromium-')
    partial = path + '.partial.png'
    try:
        subprocess.run([chromium] + CHROMIUM_FLAGS + [
            '--user-data-dir=' + profile, '--window-size=%d,%d' % size,
            '--virtual-time-budget=60000', '--screenshot=' + partial, url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=300, check=True)
        os.replace(partial, path)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        if os.path.exists(partial):
            os.remove(partial)


def main():
    p = flags.parser(__doc__, training=False)
    p.add_argument('--out', default='runs/tensorboard_demo',
                   help='directory of the two training runs')
    p.add_argument('--png', help='the screenshot',
                   default=os.path.join(ROOT, 'media', 'tensorboard.png'))
    p.add_argument('--classifier-iterations', type=int,
                   default=200, help='updates of train_classifier.py')
    p.add_argument('--gain-iterations', type=int,
                   default=60, help='updates of train_GAIN.py')
    p.add_argument('--chromium', default='chromium',
                   help='the Chromium executable')
    args = p.parse_args()
    chromium = shutil.which(args.chromium)
    if chromium is None:
        raise UsageError('no %s found: install Chromium (Debian: apt-get '
                         'install chromium) or pass --chromium PATH'
                         % args.chromium)
    os.makedirs(args.out, exist_ok=True)
    classifier = os.path.join(args.out, 'classifier')
    gain = os.path.join(args.out, 'gain')
    seed = ['--seed', args.seed]
    train('train_classifier.py', classifier, args.device, seed + [
        '--modelfile', STAND_IN, '--batch-size', 16, '--iterations',
        args.classifier_iterations, '--val-interval', 20])
    # the CPU preset's lr and seg_weight (training/defaults.py)
    train('train_GAIN.py', gain, args.device, seed + [
        '--modelfile', os.path.join(classifier, 'model.npz'),
        '--batch-size', 8, '--iterations', args.gain_iterations,
        '--lr', 3e-4, '--am-weight', 2, '--seg-weight', 2, '--sigma', 0.4,
        '--val-interval', 10, '--attention-interval', 10,
        '--attention-val-images', 100])
    with tensorboard.server(args.out) as url:
        wait_for_runs(url, ['classifier/tensorboard/', 'gain/tensorboard/'])
        # SVG charts: the default WebGL ones draw in a worker that headless
        # Chromium's virtual time does not wait for
        page = '%s/?%s#timeseries' % (url, urllib.parse.urlencode(
            dict(tagFilter=TAGS, smoothing=0, forceSVG='true')))
        screenshot(chromium, page, args.png, (1900, 1300))
    print('wrote %s' % args.png)


if __name__ == '__main__':
    cli.run(main)
