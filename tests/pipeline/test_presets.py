"""pipeline/presets.py: the shipped stand-in is the documented file."""
import hashlib
import os
import re

from helpers import ROOT
from models.io import load_model
from pipeline.presets import PRESETS, STAND_IN


def test_shipped_stand_in_is_the_documented_file():
    with open(os.path.join(ROOT, 'models', 'pretrained', 'README.md')) as f:
        documented = re.search(r'sha256 \| `([0-9a-f]{64})`', f.read())
    with open(STAND_IN, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert documented and digest == documented.group(1)
    model, has_head = load_model(STAND_IN, require_head=True)
    assert has_head and model.width == PRESETS['cpu']['width']
    assert model.head_trained_by == ['train_fcn.py --cls-weight 1'] * 2
