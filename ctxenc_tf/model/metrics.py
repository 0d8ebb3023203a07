"""Image-quality measures on the hole, in the literature's conventions (images in [0, 1]).

Inputs are NHWC in ``[-1, 1]`` (as the networks use); ``region`` ``[N, H, W, 1]`` in
``{0, 1}`` selects the pixels measured. Each function returns one value per example.
"""

from keras import ops


def _masked_mean(values, region):
    region = ops.cast(region, values.dtype)
    channels = ops.cast(ops.shape(values)[-1], values.dtype)
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


SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _gaussian_kernel(channels, size=SSIM_WINDOW, sigma=SSIM_SIGMA):
    """Normalised ``size x size`` Gaussian as a depthwise kernel ``[size, size, channels, 1]``."""
    x = ops.arange(size, dtype="float32") - (size - 1) / 2.0
    g = ops.exp(-ops.square(x) / (2.0 * sigma ** 2))
    g = g / ops.sum(g)
    kernel = ops.outer(g, g)[:, :, None, None]
    return ops.tile(kernel, (1, 1, channels, 1))


def ssim_map(prediction, target):
    """Per-window SSIM (Wang et al. 2004; 11x11 Gaussian windows, sigma 1.5, K1 0.01,
    K2 0.03, peak 1 on images scaled to ``[0, 1]``), as ``tf.image.ssim`` computes it.

    Inputs NHWC ``[N, H, W, C]`` in ``[-1, 1]``, ``H, W >= 11``. Returns
    ``[N, H - 10, W - 10, C]`` float32; entry ``(i, j)`` is the window centred on pixel
    ``(i + 5, j + 5)``.
    """
    x = (ops.cast(prediction, "float32") + 1.0) / 2.0
    y = (ops.cast(target, "float32") + 1.0) / 2.0
    kernel = _gaussian_kernel(ops.shape(x)[-1])

    def blur(v):
        return ops.depthwise_conv(v, kernel, strides=1, padding="valid")

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - ops.square(mu_x)
    var_y = blur(y * y) - ops.square(mu_y)
    cov = blur(x * y) - mu_x * mu_y
    luminance = (2.0 * mu_x * mu_y + c1) / (ops.square(mu_x) + ops.square(mu_y) + c1)
    structure = (2.0 * cov + c2) / (var_x + var_y + c2)
    return luminance * structure


def masked_ssim(prediction, target, region):
    """Mean SSIM over the windows centred on ``region`` (``[N, H, W, 1]`` in ``{0, 1}``;
    all ones gives the whole-image SSIM of ``tf.image.ssim``). Inputs in ``[-1, 1]``.
    Returns ``[N]`` float32 in ``[-1, 1]``."""
    r = SSIM_WINDOW // 2
    values = ssim_map(prediction, target)
    return _masked_mean(values, ops.cast(region, "float32")[:, r:-r, r:-r, :])
