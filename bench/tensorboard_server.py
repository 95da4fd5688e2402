"""A local TensorBoard server over event files, and its HTTP API, to read
back what the runs wrote (the tests and the screenshot of
``make tensorboard-screenshot``)."""
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


@contextlib.contextmanager
def server(logdir, deadline=120):
    """A TensorBoard server over ``logdir`` on 127.0.0.1 at a port the OS
    picks; yields its base URL (``http://127.0.0.1:PORT``) and stops it on
    exit. RuntimeError if it does not start within ``deadline`` seconds."""
    with tempfile.TemporaryFile('w+') as log:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'tensorboard.main', '--logdir', logdir,
             '--host', '127.0.0.1', '--port', '0', '--reload_interval', '1'],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield _started_at(proc, log, deadline)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _started_at(proc, log, deadline):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        log.seek(0)
        output = log.read()
        found = re.search(r'at (http://127\.0\.0\.1:\d+)/', output)
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise RuntimeError('tensorboard exited with status %d: %s'
                               % (proc.returncode, output.strip()))
        time.sleep(0.1)
    raise RuntimeError('tensorboard did not start within %d s' % deadline)


def fetch(url, path, **query):
    """The body of ``url + path`` with the ``query`` parameters (never
    through a proxy): JSON decoded, bytes for anything else."""
    if query:
        path += '?' + urllib.parse.urlencode(query)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url + path, timeout=60) as response:
        body = response.read()
        if response.headers.get_content_type() == 'application/json':
            return json.loads(body)
        return body
