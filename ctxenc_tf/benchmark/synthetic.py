"""The bench with Keras alone, for a machine with JAX (or PyTorch) and no TensorFlow:
``KERAS_BACKEND=jax python -m ctxenc_tf bench --synthetic``. Imports no TensorFlow.

On synthetic in-memory batches and on the devices Keras finds (a GPU when there is one),
in float32, ``mixed_bfloat16`` and ``mixed_float16``: training throughput (``model.fit``,
data-parallel over the devices under JAX, XLA-compiled) and generator inference (Keras'
``predict_on_batch``, compiled by the backend) at batch 1 and 64 (``--latency-batches``). Under
PyTorch, where the model does not train, the training rows say so.
"""

import importlib.metadata

import keras

from ctxenc_tf.benchmark import timing
from ctxenc_tf.config import RunConfig
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.model.networks import build_generator
from ctxenc_tf.model.replicas import devices
from ctxenc_tf.training.data_parallel import check_global_batch, data_parallel
from ctxenc_tf.training.optimizers import compile_for_run

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TRAINS = ("tensorflow", "jax")  # the backends ContextEncoder trains under


def machine_description() -> str:
    """The CPU, the devices Keras computes on, and the Keras and backend versions."""
    backend = keras.backend.backend()
    return (f"{timing.cpu_name()}; devices {', '.join(devices())}; "
            f"Keras {keras.__version__}, {backend} {importlib.metadata.version(backend)}")


def training_throughput(config: RunConfig, settings: timing.BenchSettings) -> dict:
    """:func:`~ctxenc_tf.benchmark.timing.time_fits` of ``config`` in its precision on one
    synthetic batch repeated; under JAX data-parallel as ``--strategy`` says. Its figures
    and ``"replicas"``."""
    batch = timing.synthetic_batch(config.model, config.batch_size)

    def batches():
        while True:
            yield batch

    jax = keras.backend.backend() == "jax"
    keras.config.set_dtype_policy(config.precision)
    try:
        keras.utils.set_random_seed(config.seed)
        replicas = 1
        if jax:
            distribution = data_parallel(config.strategy)
            check_global_batch(distribution, config.batch_size)
            replicas = distribution.num_replicas_in_sync
        model = ContextEncoder(config.model)
        compile_for_run(model, config)
        result = timing.time_fits(model, batches(), settings.steps, settings.warmup, settings.train_repeats,
                           config.batch_size)
    finally:
        keras.config.set_dtype_policy("float32")
        if jax:
            keras.distribution.set_distribution(None)
    return {**result, "replicas": replicas}


def inference_ms(config: RunConfig, settings: timing.BenchSettings) -> dict:
    """``{batch: median ms}`` of the generator in ``config``'s precision (``predict_on_batch``)
    at each of ``settings.latency_batches``, on one device."""
    keras.config.set_dtype_policy(config.precision)
    try:
        generator = build_generator(config.model)
    finally:
        keras.config.set_dtype_policy("float32")
    images, masks = timing.synthetic_batch(config.model, max(settings.latency_batches))
    return {batch: timing.latency_ms(lambda: generator.predict_on_batch([images[:batch], masks[:batch]]),
                                     settings.repeats)
            for batch in settings.latency_batches}


def run(config: RunConfig, settings: timing.BenchSettings, log=print) -> timing.Table:
    """Every row for ``config`` (the model and global batch benchmarked) in each of
    :data:`PRECISIONS`. Returns the filled :class:`~ctxenc_tf.benchmark.timing.Table`."""
    table = timing.Table(log)
    table.add("machine", "", machine_description())
    config = config if config.model.fill_value else config.replace(fill_value=(0.0, 0.0, 0.0))
    model = ContextEncoder(config.model)
    g_flops, _, step_flops = timing.flops_per_image(model)
    table.add("FLOPs / image", f"generator forward, {config.model.image_size}px, bottleneck "
              f"{config.model.bottleneck}", timing.si(g_flops, "FLOP"))
    table.add("FLOPs / image", timing.STEP_FLOPS_SETTING, timing.si(step_flops, "FLOP"))
    backend = keras.backend.backend()
    for precision in PRECISIONS:
        run_config = config.replace(precision=precision)
        if backend not in TRAINS:
            table.add("training", precision, f"not measured: the model trains under {' or '.join(TRAINS)}")
        elif "train" not in settings.skip:
            r = training_throughput(run_config, settings)
            slowest, median = r["images_per_s"]
            table.add("training", f"batch {config.batch_size}, {precision}, {r['replicas']} replica(s)",
                      f"{slowest:.1f} / {median:.1f} images/s (min / median)",
                      f"median step {r['step_ms'][1]:.1f} ms, {timing.si(median * step_flops, 'FLOP/s')}; "
                      f"compile {r['compile_s']:.1f} s; {settings.train_repeats} x {settings.steps} steps",
                      values={"images_per_s_min": slowest, "images_per_s_median": median,
                              "step_ms_min": r["step_ms"][0], "step_ms_median": r["step_ms"][1],
                              "flops_per_s": median * step_flops, "compile_s": r["compile_s"]})
        if "inference" not in settings.skip:
            ms = inference_ms(run_config, settings)
            table.add("generator inference", precision,
                      "; ".join(f"batch {b}: {t:.1f} ms ({1000 * b / t:.0f} images/s)" for b, t in ms.items()),
                      f"predict_on_batch, median of {settings.repeats}",
                      values={f"batch_{b}_ms": t for b, t in ms.items()})
    return table
