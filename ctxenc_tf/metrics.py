"""Image-quality measures on the hole, in the literature's conventions (images in [0, 1]).

Inputs are NHWC in ``[-1, 1]`` (as the networks use); ``region`` ``[N, H, W, 1]`` in
``{0, 1}`` selects the pixels measured. Each function returns one value per example.
"""

from keras import ops


def _masked_mean(values, region):
    channels = ops.cast(ops.shape(values)[-1], "float32")
    area = ops.maximum(ops.sum(region, axis=(1, 2, 3)), 1.0) * channels
    return ops.sum(values * region, axis=(1, 2, 3)) / area


def _unit_diff(prediction, target):
    return (ops.cast(prediction, "float32") - ops.cast(target, "float32")) / 2.0


def masked_l1(prediction, target, region):
    """Mean absolute error on ``region``, images scaled to ``[0, 1]``. ``[N]``, in [0, 1]."""
    return _masked_mean(ops.abs(_unit_diff(prediction, target)), region)


def masked_mse(prediction, target, region):
    """Mean squared error on ``region``, images scaled to ``[0, 1]``. ``[N]``, in [0, 1]."""
    return _masked_mean(ops.square(_unit_diff(prediction, target)), region)


def masked_psnr(prediction, target, region, max_mse_floor=1e-10):
    """PSNR in dB on ``region`` with peak 1.0 (images in ``[0, 1]``). ``[N]``."""
    mse = ops.maximum(masked_mse(prediction, target, region), max_mse_floor)
    return -10.0 * ops.log(mse) / ops.log(10.0)
