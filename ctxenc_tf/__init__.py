"""ctxenc-tf: Context Encoders (Pathak et al., CVPR 2016) for image inpainting in TensorFlow/Keras 3."""

__version__ = "0.1.0"
