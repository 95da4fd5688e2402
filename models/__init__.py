"""FCN8s with a GAIN head and Grad-CAM (model files: models.io)."""
import chainer_compat  # NOQA: before chainer (Python 3.12)
from models import cpu_convolution
from models.fcn8s import FCN8s  # NOQA
from models.grad_cam import (attention_maps, cam_from_features, class_cams,  # NOQA
                             grad_cam, inference_cams, normalize_cam)
from models.resize import resize_bilinear  # NOQA

cpu_convolution.install()   # for every model, script and test
