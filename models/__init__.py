"""FCN8s with a GAIN head, Grad-CAM and model files."""
import chainer_compat  # NOQA: before chainer (Python 3.12)
from models.fcn8s import FCN8s  # NOQA
from models.grad_cam import cam_from_features, grad_cam, normalize_cam  # NOQA
from models.resize import resize_bilinear  # NOQA
from models.serialization import ModelFileError, load_model, save_model  # NOQA
