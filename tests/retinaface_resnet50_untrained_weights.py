"""Write untrained RetinaFace ResNet-50 weights in the retina-face package's own format: the package's Keras
model (retina-face 0.0.19, retinaface.model.retinaface_model) with seeded random weights, saved as the HDF5
file its build_model loads (https://github.com/serengil/deepface_models/releases/download/v1.0/retinaface.h5
is that file with trained weights; it cannot be had here).

Random weights score every anchor near 0 or 1, which floods the package's NMS with thousands of boxes; so the
face-score convolutions are set to a constant: every stride-32 anchor (the largest boxes) scores
sigmoid(FACE_LOGIT), the smaller strides nothing. Where the boxes lie still depends on the seeded box
regression weights, so two seeds give different boxes.

Run with the RetinaFace environment's Python: `python retinaface_resnet50_untrained_weights.py OUT.h5 SEED`.
"""

import os
import sys

os.environ["DEEPFACE_BACKEND_ENGINE"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from retinaface.model import retinaface_model  # noqa: E402

FACE_LOGIT = 4.0
output, seed = sys.argv[1], int(sys.argv[2])
tf.keras.utils.set_random_seed(seed)
# build_model ends by loading (or downloading) the trained weights: keep the random ones instead.
retinaface_model.load_weights = lambda model: model
model = retinaface_model.build_model()
for stride, logit in ((32, FACE_LOGIT), (16, -FACE_LOGIT), (8, -FACE_LOGIT)):
    layer = model.get_layer(f"face_rpn_cls_score_stride{stride}")
    kernel, bias = layer.get_weights()
    # Channels 0-1: background of the two anchors; 2-3: face.
    layer.set_weights([np.zeros_like(kernel), np.array([0.0, 0.0, logit, logit], bias.dtype)])
model.save_weights(output)
