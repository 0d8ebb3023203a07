"""The full benchmark's parts that TensorFlow measures (:class:`TensorFlowAdapter`, for
:func:`ctxenc_tf.benchmark.suite.run`): the GPUs by name, the matmul peak, training under
the ``tf.distribute`` strategy ``train.py`` would pick with XLA on and off and in mixed
precision, the input pipeline, inference latency through the one model runner (exports
included) and the face path. The command and what each row means are in
:mod:`ctxenc_tf.cli.bench`."""

import os
import tempfile
import time
from contextlib import contextmanager

import keras
import numpy as np
import tensorflow as tf

from ctxenc_tf.benchmark.faces import face_rows
from ctxenc_tf.benchmark.op_profile import profile_step
from ctxenc_tf.benchmark.suite import KerasAdapter, training_model
from ctxenc_tf.benchmark.timing import BenchSettings, Table, latency_ms, si, synthetic_batch, timed
from ctxenc_tf.config import RunConfig
from ctxenc_tf.data import pipeline, sources
from ctxenc_tf.data.prepare import prepare_records
from ctxenc_tf.data.samples import real_images
from ctxenc_tf.errors import DataError
from ctxenc_tf.export.saved_model import export_saved_model
from ctxenc_tf.export.tflite import export_tflite
from ctxenc_tf.inference.runner import KerasRunner, load_runner, usable_cores
from ctxenc_tf.model.replicas import device_kind
from ctxenc_tf.training.data_parallel import check_global_batch
from ctxenc_tf.training.optimizers import run_jit_compile
from ctxenc_tf.training.strategy import make_strategy, mixed_precision_policy

PIPELINE_IMAGES = 2048  # images the input-pipeline rows read (and prepare), cycled as epochs


def matmul_peak(n: int, dtype: str = "float32", repeats: int = 5, trials: int = 3) -> float:
    """Measured matmul throughput in FLOP/s: ``repeats`` chained ``[n, n] x [n, n]``
    products (``2 n^3`` FLOPs each) in one ``tf.function``, best of ``trials``."""
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


class TensorFlowAdapter(KerasAdapter):
    """The full bench: the usable cores and GPUs by name; training with XLA on and off,
    and in the mixed policy that pays off here (XLA as training defaults to) when the
    config is float32, under the config's ``tf.distribute`` strategy, on a ``tf.data``
    batch repeated; the matmul peak; then the input pipeline, inference latency and the
    face path."""

    def devices(self) -> str:
        gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in tf.config.list_physical_devices("GPU")]
        return f"{usable_cores()} core(s) usable, {', '.join(gpus) if gpus else 'no GPU'}"

    def training_settings(self, config: RunConfig) -> list:
        settings = [(config.precision, True), (config.precision, False)]
        if config.precision == "float32":
            settings.append((mixed_precision_policy(), run_jit_compile(config)))
        return settings

    @contextmanager
    def replicas(self, config: RunConfig):
        strategy = make_strategy(config.strategy)
        check_global_batch(strategy, config.batch_size)
        with strategy.scope():
            yield strategy.num_replicas_in_sync

    def repeated(self, batch):
        return tf.data.Dataset.from_tensors(batch).repeat().with_options(pipeline.fit_options())

    def matmul_peak(self, settings: BenchSettings, dtype: str) -> float:
        return matmul_peak(settings.matmul_size, dtype, settings.matmul_repeats)

    def later_rows(self, table: Table, model, config: RunConfig, settings: BenchSettings, speeds: dict,
                   log) -> None:
        """The step's profile, input pipeline, inference latency and the face path, each
        unless skipped."""
        if "profile" not in settings.skip:
            _profile_rows(table, config, settings, self)
        with tempfile.TemporaryDirectory(prefix="ctxenc-bench-") as tmp:
            if "pipeline" not in settings.skip:
                _pipeline_rows(table, config, settings, tmp, speeds.get((config.precision, run_jit_compile(config))))
            if "inference" not in settings.skip:
                _inference_rows(table, model, settings, tmp, log)
        if "faces" not in settings.skip:
            face_rows(table, KerasRunner(model), settings.repeats)


def pipeline_throughput(images, config: RunConfig, batches: int) -> float:
    """Images/s of :func:`ctxenc_tf.data.pipeline.training_batches` over ``images`` (an
    :class:`~ctxenc_tf.data.image_source.ImageSource`) alone: ``batches`` batches of
    ``config.batch_size`` from a cold iterator (so shard reading and shuffle-block filling
    are included), over as many epochs as that takes."""

    per_epoch = pipeline.steps_per_epoch(len(images), config.batch_size)
    if per_epoch == 0:
        raise DataError(f"{len(images)} images for the input-pipeline rows, fewer than "
                        f"--batch-size={config.batch_size}")
    epochs = -(-batches // per_epoch)

    def consume():
        iterator = iter(pipeline.training_batches(images, config, 0, 0, epochs))
        for _ in range(batches):
            next(iterator)

    return batches * config.batch_size / timed(consume)


def inference_runners(model, out_dir: str, variants, calibration, log) -> dict:
    """``{name: runner}`` (:mod:`ctxenc_tf.inference.runner`) for the Keras model in a
    ``tf.function`` without and with XLA, the exported SavedModel and each TFLite variant.
    Export times are logged."""
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


def _profile_rows(table: Table, config: RunConfig, settings: BenchSettings, adapter: TensorFlowAdapter) -> None:
    """Where the time of a training step in ``config``'s precision goes, on one device with
    TensorFlow's own kernels (XLA's compiled step is one op to the profiler): per
    convolution forward and backward, its GFLOP/s and fraction of a matmul peak measured
    just before the profiled steps, then the other ops by kind (:mod:`ctxenc_tf.benchmark.op_profile`)."""
    if device_kind() != "cpu":
        table.add("step profile", config.precision, "not measured: on a GPU or TPU the executor's op times are "
                  "host-side launches, not the kernels")
        return
    config = config.replace(jit_compile=False, strategy="default")
    batches = adapter.repeated(synthetic_batch(config.model, config.batch_size))
    with training_model(config, adapter) as (model, _):
        model.fit(batches, steps_per_epoch=settings.warmup, verbose=0)
        peak = adapter.matmul_peak(settings, keras.DTypePolicy(config.precision).compute_dtype)
        profile = profile_step(model, batches, settings.steps, config.batch_size, peak)
    setting = f"batch {config.batch_size}, {config.precision}, XLA off, one device"
    if not profile["busy_ms"]:  # test_compat pins the trace format this reads
        table.add("step profile", setting, "not measured: the profiler's trace holds no executor ops")
        return
    table.add("step profile", setting,
              f"wall {profile['step_ms']:.1f} ms per step, ops running {profile['busy_ms']:.1f} ms of it",
              f"op durations add up to {profile['op_ms']:.1f} ms (more: ops ran at once, sharing the cores); "
              f"{settings.steps} profiled steps; matmul peak measured just before them: {peak / 1e9:.1f} GFLOP/s",
              values=profile)
    for row in profile["layers"]:
        parts = [f"{d} {row[d]['ms']:.1f} ms, {row[d]['gflop_per_s']:.0f} GFLOP/s "
                 f"({100 * row[d]['peak_fraction']:.0f}%)" for d in ("forward", "backward")]
        table.add("step profile", f"{row['network']} {row['layer']}", "; ".join(parts),
                  f"{si(row['flops_per_image'], 'FLOP')} per image forward; % of the peak")
    for row in profile["other"]:
        table.add("step profile", row["kind"], f"{row['ms']:.1f} ms",
                  f"{100 * row['ms'] / profile['op_ms']:.1f}% of the op durations")


def _pipeline_rows(table: Table, config: RunConfig, settings: BenchSettings, tmp: str, training_speed) -> None:
    """Input pipeline alone: JPEG files, then the same images prepared as TFRecords."""

    source = config.replace(data_dir=settings.data_dir, train_limit=PIPELINE_IMAGES, val_limit=1)
    files = sources.find_sources(source).train
    jpeg = pipeline_throughput(files, config, settings.pipeline_batches)
    prepared = os.path.join(tmp, "prepared")
    prepare_records(source, prepared, log=lambda *a: None)
    records = sources.find_sources(config.replace(data_dir=prepared)).train
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
    # The calibration images, cycled to the largest batch: a latency batch may be larger
    # than the training split.
    images = np.resize(calibration, (largest,) + calibration.shape[1:]).astype(np.float32)
    for name, runner in runners.items():
        hole = runner.centre_masks(len(images))
        results = []
        for batch in settings.latency_batches:
            ms = latency_ms(lambda: runner.inpaint(images[:batch], hole[:batch]), settings.repeats)
            results.append(f"batch {batch}: {ms:.1f} ms ({1000 * batch / ms:.0f} images/s)")
        note = f"batch N = N invocations of batch 1, {usable_cores()} threads" if name.startswith("TFLite") else ""
        table.add("inference latency", name, "; ".join(results), note)
