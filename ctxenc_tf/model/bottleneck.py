"""The bottleneck's two layers as the matrix products they are.

The paper's encoder ends with a 4x4 valid convolution of a 4x4 input (512 -> 4000
channels) and its decoder starts with a 4x4 valid transposed convolution of the 1x1 code
(4000 -> 512). Each touches every input position exactly once: one ``[N, 8192] x
[8192, 4000]`` product and its transpose. Written as convolutions they run at a fraction
of matmul speed on CPU (oneDNN picks a generic kernel for them); written as matmuls they
use the same weights, in the same variables and layout, so checkpoints saved with plain
``Conv2D`` / ``Conv2DTranspose`` layers load into either form.

Both layers fall back to the convolution when the input is not the single-window case
(another image size), so they are drop-in replacements.
"""

import keras
from keras import ops


def _activate(layer, y):
    if layer.use_bias:
        y = y + layer.bias
    return layer.activation(y) if layer.activation is not None else y


@keras.saving.register_keras_serializable(package="ctxenc_tf")
class WindowConv2D(keras.layers.Conv2D):
    """``Conv2D`` with ``padding="valid"`` and stride 1 whose kernel covers the whole
    ``[N, k, k, C]`` input: computed as ``[N, k*k*C] x [k*k*C, filters]``. Output
    ``[N, 1, 1, filters]``, the convolution's."""

    def call(self, inputs):
        k = self.kernel_size
        if tuple(inputs.shape[1:3]) != tuple(k) or self.padding != "valid" or tuple(self.strides) != (1, 1):
            return super().call(inputs)
        # NHWC flattens (h, w, c) in the order of the kernel's (kh, kw, in) axes.
        flat = ops.reshape(inputs, (-1, k[0] * k[1] * inputs.shape[-1]))
        y = ops.matmul(flat, ops.reshape(self.kernel, (-1, self.filters)))
        return _activate(self, ops.reshape(y, (-1, 1, 1, self.filters)))


@keras.saving.register_keras_serializable(package="ctxenc_tf")
class WindowConv2DTranspose(keras.layers.Conv2DTranspose):
    """``Conv2DTranspose`` with ``padding="valid"`` and stride 1 of a ``[N, 1, 1, C]``
    input: each output position (h, w) is ``x @ kernel[h, w]``, i.e. one
    ``[N, C] x [C, k*k*filters]`` product. Output ``[N, k, k, filters]``, the
    transposed convolution's."""

    def call(self, inputs):
        k = self.kernel_size
        if tuple(inputs.shape[1:3]) != (1, 1) or self.padding != "valid" or tuple(self.strides) != (1, 1):
            return super().call(inputs)
        # Keras keeps the kernel as (kh, kw, filters, in): as (kh*kw*filters, in) it is a free
        # reshape. Computed as (kernel @ x^T)^T, only the small [N, in] and [N, k*k*filters]
        # activations are ever transposed: x @ kernel^T would have TensorFlow transpose the
        # kernel-sized gradient (131 MB at the paper's size) on every step, and a 4-D
        # transpose of the kernel would copy it in the forward pass as well.
        kernel = ops.reshape(self.kernel, (-1, inputs.shape[-1]))
        y = ops.transpose(ops.matmul(kernel, ops.transpose(ops.reshape(inputs, (-1, inputs.shape[-1])))))
        return _activate(self, ops.reshape(y, (-1, k[0], k[1], self.filters)))
