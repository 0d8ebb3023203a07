"""The full benchmark's measurements, in TensorFlow (machine, matmul peak, training
throughput under ``tf.distribute``, input pipeline, inference latency through the one model
runner, exports included), with :mod:`ctxenc_tf.benchmark.timing`'s FLOPs, timers and
table. The command and what each row means are in :mod:`ctxenc_tf.cli.bench`."""

import os
import tempfile
import time

import numpy as np

from ctxenc_tf.benchmark.faces import face_rows
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
    timed,
)
from ctxenc_tf.config import RunConfig
from ctxenc_tf.data import pipeline, sources
from ctxenc_tf.data.prepare import prepare
from ctxenc_tf.data.samples import real_images
from ctxenc_tf.errors import DataError
from ctxenc_tf.inference.runner import KerasRunner, load_runner, usable_cores

PIPELINE_IMAGES = 2048  # images the input-pipeline rows read (and prepare), cycled as epochs

# The dtype a precision policy computes in: the matmul peak the training rows compare with.
COMPUTE_DTYPES = {"float32": "float32", "float64": "float64", "mixed_float16": "float16",
                  "mixed_bfloat16": "bfloat16"}


def machine_description() -> str:
    """One line naming the CPU, the cores this process may use, the GPUs and TF's version."""
    import tensorflow as tf

    cores = usable_cores()
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    return (f"{cpu_name()}, {cores} core(s) usable, "
            f"{', '.join(gpus) if gpus else 'no GPU'}; TensorFlow {tf.__version__}")


def matmul_peak(n: int, dtype: str = "float32", repeats: int = 5, trials: int = 3) -> float:
    """Measured matmul throughput in FLOP/s: ``repeats`` chained ``[n, n] x [n, n]``
    products (``2 n^3`` FLOPs each) in one ``tf.function``, best of ``trials``."""
    import tensorflow as tf

    a = tf.random.normal([n, n], dtype=tf.float32)
    b = tf.cast(tf.random.normal([n, n]) / np.sqrt(n), dtype)  # keeps the chain's scale ~1
    a = tf.cast(a, dtype)

    @tf.function
    def chain(x):
        for _ in range(repeats):
            x = tf.matmul(x, b)
        return x[0, 0]

    chain(a).numpy()  # trace and warm up
    best = min(timed(lambda: chain(a).numpy()) for _ in range(trials))
    return 2.0 * n ** 3 * repeats / best


def training_throughput(config: RunConfig, steps: int, warmup: int, repeats: int = 3) -> dict:
    """Train ``config`` on one synthetic batch repeated (no input pipeline) with
    ``model.fit`` under the strategy ``config.strategy`` names, timed by
    :func:`~ctxenc_tf.benchmark.timing.time_fits`; its figures and ``"replicas"``."""
    import keras
    import tensorflow as tf

    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.training.data_parallel import check_global_batch
    from ctxenc_tf.training.optimizers import compile_for_run
    from ctxenc_tf.training.strategy import make_strategy, set_precision

    set_precision(config.precision)
    try:
        keras.utils.set_random_seed(config.seed)
        strategy = make_strategy(config.strategy)
        check_global_batch(strategy, config.batch_size)
        ds = tf.data.Dataset.from_tensors(synthetic_batch(config.model, config.batch_size)).repeat()
        ds = ds.with_options(pipeline.fit_options())
        with strategy.scope():
            model = ContextEncoder(config.model)
            compile_for_run(model, config)
        result = time_fits(model, ds, steps, warmup, repeats, config.batch_size)
    finally:
        set_precision("float32")
    return {**result, "replicas": strategy.num_replicas_in_sync}


def pipeline_throughput(files, config: RunConfig, batches: int) -> float:
    """Images/s of :func:`ctxenc_tf.pipeline.training_batches` over ``files`` (image paths or
    prepared :class:`~ctxenc_tf.records.Records`) alone: ``batches`` batches of
    ``config.batch_size`` from a cold iterator (so shard reading and shuffle-block filling
    are included), over as many epochs as that takes."""

    per_epoch = pipeline.steps_per_epoch(len(files), config.batch_size)
    if per_epoch == 0:
        raise DataError(f"{len(files)} images for the input-pipeline rows, fewer than "
                             f"--batch-size={config.batch_size}")
    epochs = -(-batches // per_epoch)

    def consume():
        iterator = iter(pipeline.training_batches(files, config, 0, 0, epochs))
        for _ in range(batches):
            next(iterator)

    return batches * config.batch_size / timed(consume)


def inference_runners(model, out_dir: str, variants, calibration, log) -> dict:
    """``{name: runner}`` (:mod:`ctxenc_tf.inference.runner`) for the Keras model in a
    ``tf.function`` without and with XLA, the exported SavedModel and each TFLite variant.
    Export times are logged."""
    from ctxenc_tf.export.saved_model import export_saved_model
    from ctxenc_tf.export.tflite import export_tflite

    runners = {"Keras": KerasRunner(model, jit_compile=False),
               "Keras + XLA": KerasRunner(model, jit_compile=True)}
    seconds = time.perf_counter()
    saved = export_saved_model(model, out_dir)
    log(f"SavedModel export: {time.perf_counter() - seconds:.1f} s")
    runners["SavedModel"] = load_runner(saved)
    seconds = time.perf_counter()
    paths = export_tflite(model, out_dir, variants=variants, representative_images=calibration)
    log(f"TFLite conversion of {len(paths)} variant(s): {time.perf_counter() - seconds:.1f} s")
    for variant, path in paths.items():
        runners[f"TFLite {variant}"] = load_runner(path)
    return runners


def _training_rows(table: Table, config: RunConfig, settings: BenchSettings, step_flops: int,
                   peaks: list) -> float:
    """Training throughput with XLA on and off, and in mixed precision (XLA as training
    defaults to on this machine) when the config is float32; the ratios between them.
    The matmul peak is measured again after each setting and appended to ``peaks``; each
    row in the config's precision is a fraction of the highest peak measured so far (the
    machine's speed drifts while it is shared, and the highest is the strictest yardstick).
    Returns the median images/s of the XLA setting training defaults to."""
    from ctxenc_tf.training.optimizers import default_jit_compile
    from ctxenc_tf.training.strategy import mixed_precision_policy

    default_jit = default_jit_compile() if config.jit_compile is None else config.jit_compile
    compute = COMPUTE_DTYPES[config.precision]
    runs = [(config.precision, True), (config.precision, False)]
    if config.precision == "float32":
        runs.append((mixed_precision_policy(), default_jit))
    speeds = {}
    for precision, jit in runs:
        r = training_throughput(config.replace(jit_compile=jit, precision=precision), settings.steps,
                                settings.warmup, settings.train_repeats)
        peaks.append(matmul_peak(settings.matmul_size, compute, settings.matmul_repeats))
        slowest, median = r["images_per_s"]
        speeds[precision, jit] = median
        setting = (f"batch {config.batch_size}, {precision}, XLA {'on' if jit else 'off'}, "
                   f"{r['replicas']} replica(s)")
        values = {"images_per_s_min": slowest, "images_per_s_median": median,
                  "step_ms_min": r["step_ms"][0], "step_ms_median": r["step_ms"][1]}
        relative = f"median step {r['step_ms'][1]:.0f} ms"
        if precision == config.precision:  # a mixed policy computes in another dtype
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
    xla, plain = speeds[config.precision, True], speeds[config.precision, False]
    table.add("training", "XLA speed-up", f"{xla / plain:.2f}x", "median images/s, XLA on / off",
              values={"ratio": xla / plain})
    if len(runs) == 3:
        mixed, same = speeds[runs[2]], speeds[config.precision, default_jit]
        table.add("training", f"{runs[2][0]} speed-up", f"{mixed / same:.2f}x",
                  f"median images/s, {runs[2][0]} / float32, XLA {'on' if default_jit else 'off'}",
                  values={"ratio": mixed / same})
    table.add("matmul peak", f"{settings.matmul_size}x{settings.matmul_size} {compute}, "
              f"after each training setting", " ".join(f"{p / 1e9:.1f}" for p in peaks[1:]) + " GFLOP/s",
              f"the first: {peaks[0] / 1e9:.1f}; the training rows use the highest so far",
              values={"peak_flops_after": peaks[1:]})
    return speeds[config.precision, default_jit]


def _pipeline_rows(table: Table, config: RunConfig, settings: BenchSettings, tmp: str, training_speed) -> None:
    """Input pipeline alone: JPEG files, then the same images prepared as TFRecords."""

    source = config.replace(data_dir=settings.data_dir, train_limit=PIPELINE_IMAGES, val_limit=1)
    files = sources.find_split(source).train
    jpeg = pipeline_throughput(files, config, settings.pipeline_batches)
    prepared = os.path.join(tmp, "prepared")
    prepare(source, prepared, log=lambda *a: None)
    records = sources.find_prepared(config.replace(data_dir=prepared)).train
    shards = pipeline_throughput(records, config, settings.pipeline_batches)
    table.add("input pipeline", f"{len(files)} JPEGs: decode + crop + resize + flip + mask, "
              f"batch {config.batch_size}", f"{jpeg:.0f} images/s",
              f"{jpeg / training_speed:.1f}x what training consumes" if training_speed else "")
    table.add("input pipeline", "prepared TFRecord shards: read + flip + mask",
              f"{shards:.0f} images/s", f"{shards / jpeg:.1f}x JPEG decoding")


def _inference_rows(table: Table, model, settings: BenchSettings, tmp: str, log) -> None:
    """Latency at each of ``settings.latency_batches`` for Keras, SavedModel and TFLite."""
    data_dir = settings.data_dir or None
    calibration = real_images(model.config, settings.calibration_images, data_dir=data_dir)
    runners = inference_runners(model, os.path.join(tmp, "export"), settings.variants, calibration, log)
    largest = max(settings.latency_batches)
    faces = real_images(model.config, largest, data_dir=data_dir)
    images = np.resize(faces, (largest,) + faces.shape[1:]).astype(np.float32)
    for name, runner in runners.items():
        hole = runner.centre_masks(len(images))
        results = []
        for batch in settings.latency_batches:
            ms = latency_ms(lambda: runner.inpaint(images[:batch], hole[:batch]), settings.repeats)
            results.append(f"batch {batch}: {ms:.1f} ms ({1000 * batch / ms:.0f} images/s)")
        note = f"batch N = N invocations of batch 1, {usable_cores()} threads" if name.startswith("TFLite") else ""
        table.add("inference latency", name, "; ".join(results), note)


def run(config: RunConfig, settings: BenchSettings, log=print) -> Table:
    """All measurements for ``config`` (the model and global batch benchmarked) with the
    bench's own ``settings``. Returns the filled :class:`Table`."""
    from ctxenc_tf.model.context_encoder import ContextEncoder

    table = Table(log)
    table.add("machine", "", machine_description())
    compute = COMPUTE_DTYPES[config.precision]
    peak = matmul_peak(settings.matmul_size, compute, settings.matmul_repeats)
    table.add("matmul peak", f"{settings.matmul_size}x{settings.matmul_size} {compute}, measured",
              f"{peak / 1e9:.1f} GFLOP/s", values={"peak_flops": peak})

    config = config if config.model.fill_value else config.replace(fill_value=(0.0, 0.0, 0.0))
    model = ContextEncoder(config.model)
    g_flops, d_flops, step_flops = flops_per_image(model)
    geometry = (f"{config.model.image_size}px, bottleneck {config.model.bottleneck}, "
                f"{model.generator.count_params() / 1e6:.1f}M G params")
    table.add("FLOPs / image", f"generator forward, {geometry}", si(g_flops, "FLOP"))
    table.add("FLOPs / image", "discriminator forward", si(d_flops, "FLOP"))
    table.add("FLOPs / image", STEP_FLOPS_SETTING, si(step_flops, "FLOP"))

    training_speed = None if "train" in settings.skip else _training_rows(table, config, settings, step_flops, [peak])
    with tempfile.TemporaryDirectory(prefix="ctxenc-bench-") as tmp:
        if "pipeline" not in settings.skip:
            _pipeline_rows(table, config, settings, tmp, training_speed)
        if "inference" not in settings.skip:
            _inference_rows(table, model, settings, tmp, log)
    if "faces" not in settings.skip:
        face_rows(table, KerasRunner(model), settings.repeats)
    return table
