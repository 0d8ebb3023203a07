"""The benchmark's table on any Keras backend: the machine, FLOPs per image, training
throughput in each setting with the ratios between them, then the later parts, each row
measured by :mod:`ctxenc_tf.benchmark.timing`. What a backend measures its own way is a
:class:`KerasAdapter`: this one, with Keras alone and no TensorFlow (``bench --synthetic``),
or :class:`~ctxenc_tf.benchmark.tensorflow_adapter.TensorFlowAdapter` (the full bench).

Under :class:`KerasAdapter`, on synthetic in-memory batches and on the devices Keras finds:
training in float32, ``mixed_bfloat16`` and ``mixed_float16`` (``model.fit``, data-parallel
over the devices under JAX), and generator inference (Keras' ``predict_on_batch``) at each of
``--latency-batches``. Under PyTorch, where the model does not train, the training rows say so.
"""

import contextlib
import importlib

import keras

from ctxenc_tf.benchmark.timing import (
    STEP_FLOPS_SETTING,
    BenchSettings,
    Table,
    cpu_name,
    flops_per_image,
    latency_ms,
    si,
    synthetic_batch,
    time_fits,
)
from ctxenc_tf.config import RunConfig
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.model.networks import build_generator
from ctxenc_tf.model.precision import dtype_policy
from ctxenc_tf.model.replicas import devices
from ctxenc_tf.training.data_parallel import check_global_batch, data_parallel
from ctxenc_tf.training.optimizers import compile_for_run

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TRAINS = ("tensorflow", "jax")  # the backends ContextEncoder trains under


class KerasAdapter:
    """What differs by backend, measured with Keras alone: the devices named on the
    machine row; the training settings (each of :data:`PRECISIONS`, compiled as the
    backend does by default), data-parallel under JAX, on one batch repeated by a Python
    generator; no matmul peak; generator inference as the later part."""

    def devices(self) -> str:
        """The devices the machine row names."""
        return f"devices {', '.join(devices())}"

    def training_settings(self, config: RunConfig) -> list:
        """``(precision policy, jit_compile)`` of each training row; ``jit_compile`` None
        leaves ``config.jit_compile`` (and the row's setting says nothing of XLA)."""
        return [(precision, None) for precision in PRECISIONS]

    @contextlib.contextmanager
    def replicas(self, config: RunConfig):
        """Models built and fitted inside are data-parallel as ``config.strategy`` says
        (under JAX; one device elsewhere); yields the replica count."""
        if keras.backend.backend() != "jax":
            yield 1
            return
        distribution = data_parallel(config.strategy)
        try:
            check_global_batch(distribution, config.batch_size)
            yield distribution.num_replicas_in_sync
        finally:
            keras.distribution.set_distribution(None)

    def repeated(self, batch):
        """``batch`` again and again, for ``model.fit``."""
        while True:
            yield batch

    def matmul_peak(self, settings: BenchSettings, dtype: str) -> float | None:
        """Measured matmul FLOP/s in ``dtype``; None: not measured, no peak rows."""
        return None

    def later_rows(self, table: Table, model, config: RunConfig, settings: BenchSettings, speeds: dict,
                   log) -> None:
        """The rows after training (``speeds``: median images/s by training setting):
        here generator inference in each of :data:`PRECISIONS`, unless skipped."""
        if "inference" in settings.skip:
            return
        for precision in PRECISIONS:
            ms = inference_ms(config.replace(precision=precision), settings)
            table.add("generator inference", precision,
                      "; ".join(f"batch {b}: {t:.1f} ms ({1000 * b / t:.0f} images/s)" for b, t in ms.items()),
                      f"predict_on_batch, median of {settings.repeats}",
                      values={f"batch_{b}_ms": t for b, t in ms.items()})


def machine_description(adapter: KerasAdapter) -> str:
    """One line: the CPU, the devices as ``adapter`` names them, and the Keras and backend
    versions."""
    backend = keras.backend.backend()
    version = importlib.import_module(backend).__version__  # Keras has imported it already
    return f"{cpu_name()}, {adapter.devices()}; Keras {keras.__version__}, {backend} {version}"


@contextlib.contextmanager
def training_model(config: RunConfig, adapter: KerasAdapter):
    """A ``ContextEncoder`` of ``config``, seeded, built in its precision and compiled as
    ``config`` trains it, distributed as ``adapter`` does; yields ``(model, replicas)``."""
    with dtype_policy(config.precision):
        keras.utils.set_random_seed(config.seed)
        with adapter.replicas(config) as replicas:
            model = ContextEncoder(config.model)
            compile_for_run(model, config)
            yield model, replicas


def training_throughput(config: RunConfig, settings: BenchSettings, adapter: KerasAdapter) -> dict:
    """:func:`~ctxenc_tf.benchmark.timing.time_fits` of ``config`` in its precision on one
    synthetic batch repeated (no input pipeline), distributed as ``adapter`` does; its
    figures and ``"replicas"``."""
    batch = synthetic_batch(config.model, config.batch_size)
    with training_model(config, adapter) as (model, replicas):
        result = time_fits(model, adapter.repeated(batch), settings.steps, settings.warmup,
                           settings.train_repeats, config.batch_size)
    return {**result, "replicas": replicas}


def inference_ms(config: RunConfig, settings: BenchSettings) -> dict:
    """``{batch: median ms}`` of the generator in ``config``'s precision (``predict_on_batch``)
    at each of ``settings.latency_batches``, on one device."""
    with dtype_policy(config.precision):
        generator = build_generator(config.model)
    images, masks = synthetic_batch(config.model, max(settings.latency_batches))
    return {batch: latency_ms(lambda: generator.predict_on_batch([images[:batch], masks[:batch]]), settings.repeats)
            for batch in settings.latency_batches}


def _training_rows(table: Table, config: RunConfig, settings: BenchSettings, adapter: KerasAdapter,
                   step_flops: int, peaks: list) -> dict:
    """A training row and a training overhead row for each of the adapter's settings, then
    the ratios between them: XLA on / off, and each other precision / the config's. With a
    matmul peak, it is measured again after each setting and appended to ``peaks``; each row
    in the config's precision is a fraction of the highest peak measured so far (the
    machine's speed drifts while it is shared, and the highest is the strictest yardstick).
    Returns ``{(precision, jit_compile): median images/s}``."""
    backend = keras.backend.backend()
    compute = keras.DTypePolicy(config.precision).compute_dtype
    speeds = {}
    for precision, jit in adapter.training_settings(config):
        if backend not in TRAINS:
            table.add("training", precision, f"not measured: the model trains under {' or '.join(TRAINS)}")
            continue
        r = training_throughput(config.replace(precision=precision, jit_compile=jit), settings, adapter)
        peak = adapter.matmul_peak(settings, compute)
        if peak is not None:
            peaks.append(peak)
        slowest, median = r["images_per_s"]
        speeds[precision, jit] = median
        xla = "" if jit is None else f", XLA {'on' if jit else 'off'}"
        setting = f"batch {config.batch_size}, {precision}{xla}, {r['replicas']} replica(s)"
        values = {"images_per_s_min": slowest, "images_per_s_median": median, "step_ms_min": r["step_ms"][0],
                  "step_ms_median": r["step_ms"][1], "flops_per_s": median * step_flops}
        relative = f"median step {r['step_ms'][1]:.1f} ms, {si(median * step_flops, 'FLOP/s')}"
        if peaks and precision == config.precision:  # a mixed policy computes in another dtype
            highest = max(peaks)
            values.update(peak_fraction=median * step_flops / highest, peak_flops=highest)
            relative += (f", {100 * values['peak_fraction']:.1f}% of the highest {compute} matmul peak "
                         f"so far ({highest / 1e9:.1f} GFLOP/s)")
        table.add("training", setting, f"{slowest:.1f} / {median:.1f} images/s (min / median)",
                  f"{relative}; {settings.train_repeats} x {settings.steps} steps timed one by one",
                  values=values)
        table.add("training overhead", setting,
                  f"compile {r['compile_s']:.1f} s; end of fit {r['end_of_fit_s']:.2f} s",
                  f"first fit of {settings.warmup} step(s); longest wait after the last step",
                  values={"compile_s": r["compile_s"], "end_of_fit_s": r["end_of_fit_s"]})
    if (config.precision, True) in speeds and (config.precision, False) in speeds:
        ratio = speeds[config.precision, True] / speeds[config.precision, False]
        table.add("training", "XLA speed-up", f"{ratio:.2f}x", "median images/s, XLA on / off",
                  values={"ratio": ratio})
    for (precision, jit), speed in speeds.items():
        if precision != config.precision and (config.precision, jit) in speeds:
            ratio = speed / speeds[config.precision, jit]
            xla = "" if jit is None else f", XLA {'on' if jit else 'off'}"
            table.add("training", f"{precision} speed-up", f"{ratio:.2f}x",
                      f"median images/s, {precision} / {config.precision}{xla}", values={"ratio": ratio})
    return speeds


def run(config: RunConfig, settings: BenchSettings, adapter: KerasAdapter, log=print) -> Table:
    """Every row for ``config`` (the model and global batch benchmarked) with the bench's
    own ``settings``, measured as ``adapter`` says. Returns the filled :class:`Table`."""
    table = Table(log)
    table.add("machine", "", machine_description(adapter))
    compute = keras.DTypePolicy(config.precision).compute_dtype
    peak = adapter.matmul_peak(settings, compute)
    peaks = [] if peak is None else [peak]
    matmul = f"{settings.matmul_size}x{settings.matmul_size} {compute}"
    if peaks:
        table.add("matmul peak", f"{matmul}, measured", f"{peak / 1e9:.1f} GFLOP/s", values={"peak_flops": peak})

    config = config if config.model.fill_value else config.replace(fill_value=(0.0, 0.0, 0.0))
    model = ContextEncoder(config.model)
    g_flops, d_flops, step_flops = flops_per_image(model)
    geometry = (f"{config.model.image_size}px, bottleneck {config.model.bottleneck}, "
                f"{model.generator.count_params() / 1e6:.1f}M G params")
    table.add("FLOPs / image", f"generator forward, {geometry}", si(g_flops, "FLOP"))
    table.add("FLOPs / image", "discriminator forward", si(d_flops, "FLOP"))
    table.add("FLOPs / image", STEP_FLOPS_SETTING, si(step_flops, "FLOP"))

    speeds = {} if "train" in settings.skip else _training_rows(table, config, settings, adapter, step_flops, peaks)
    if len(peaks) > 1:
        table.add("matmul peak", f"{matmul}, after each training setting",
                  " ".join(f"{p / 1e9:.1f}" for p in peaks[1:]) + " GFLOP/s",
                  f"the first: {peaks[0] / 1e9:.1f}; the training rows use the highest so far",
                  values={"peak_flops_after": peaks[1:]})
    adapter.later_rows(table, model, config, settings, speeds, log)
    return table
