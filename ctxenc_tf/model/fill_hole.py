"""Custom Keras layers used inside the functional models (serialisable for ``.keras``)."""

import keras

from ctxenc_tf.model import masks


@keras.saving.register_keras_serializable(package="ctxenc_tf")
class FillHole(keras.layers.Layer):
    """Hide the hole from the network: pixels of the mask eroded by ``overlap`` are replaced
    by the per-channel ``fill_value`` (the dataset mean, in ``[-1, 1]``).

    Inputs: ``[image, mask]``, NHWC ``[N, S, S, 3]`` in ``[-1, 1]`` and ``[N, S, S, 1]`` in
    ``{0, 1}``. Output: ``[N, S, S, 3]`` in ``[-1, 1]``.
    """

    def __init__(self, fill_value=(0.0, 0.0, 0.0), overlap=0, **kwargs):
        super().__init__(**kwargs)
        self.fill_value = tuple(float(v) for v in fill_value)
        self.overlap = int(overlap)

    def call(self, inputs):
        image, mask = inputs
        hidden = keras.ops.cast(masks.hidden_region(keras.ops.cast(mask, "float32"), self.overlap),
                                image.dtype)
        fill = keras.ops.cast(keras.ops.convert_to_tensor(self.fill_value), image.dtype)
        return image * (1.0 - hidden) + fill * hidden

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "fill_value": list(self.fill_value), "overlap": self.overlap}
