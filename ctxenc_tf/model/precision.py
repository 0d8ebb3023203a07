"""Dtype policies as the model sees them: loss scaling, output dtypes, float32 copies, and
a policy held for a while."""

import contextlib

import keras


@contextlib.contextmanager
def dtype_policy(policy: str | None = None):
    """Within: Keras' global dtype policy set to ``policy`` (``None``: left for the code
    inside to set); after: the caller's again, however the block ends."""
    caller = keras.config.dtype_policy()
    try:
        if policy is not None:
            keras.config.set_dtype_policy(policy)
        yield
    finally:
        keras.config.set_dtype_policy(caller)


def output_dtype():
    """Last layers compute in float32 under a 16-bit (mixed) policy, so predictions and
    logits stay float32; otherwise in the policy's own dtype (float32, or float64)."""
    compute = keras.config.dtype_policy().compute_dtype
    return "float32" if compute in ("float16", "bfloat16") else None


def uses_loss_scaling() -> bool:
    """Whether the current policy needs dynamic loss scaling (float16 compute)."""
    return keras.config.dtype_policy().compute_dtype == "float16"


def float32_generator(model) -> keras.Model:
    """The model's generator computing in float32: itself, or for a mixed-precision
    checkpoint a float32 clone with the same weights (exports run on CPUs and TFLite)."""
    generator = model.generator
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in generator.layers):
        return generator

    def as_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    clone = keras.models.clone_model(generator, clone_function=as_float32)
    clone.set_weights(generator.get_weights())
    return clone
