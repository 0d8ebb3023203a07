"""ctxenc-tf: Context Encoders (Pathak et al., CVPR 2016) for image inpainting in TensorFlow/Keras 3.

Importing the package has no side effects; the commands are ``python -m ctxenc_tf <command>``.
"""

__version__ = "0.2.0"
