"""Benchmarks, measured side by side in one run: ``python -m ctxenc_tf bench``.

Prints one Markdown table with

* the machine (CPU model and cores, GPUs, Keras and TensorFlow versions) and its measured matmul peak
  (chained ``N x N`` matmuls in the training compute dtype),
* the model's FLOPs per image: generator and discriminator forward passes counted from
  the layer shapes, and one training step (see
  :func:`~ctxenc_tf.benchmark.timing.train_flops_per_image`),
* training throughput (images/s, min and median over single steps) of the model at the
  given global batch with XLA and without, and with XLA in mixed precision, on synthetic
  in-memory batches (``model.fit``, the strategy ``train.py`` would pick), as a fraction
  of the highest matmul peak measured so far (the peak is measured again after each
  setting: a shared machine's speed drifts), with the ratios between them; compile time
  and the wait between the last step and ``fit`` returning on their own rows,
* where a training step's time goes (:mod:`ctxenc_tf.benchmark.op_profile`): each
  convolution's forward and backward time, GFLOP/s and fraction of the matmul peak, and
  the other ops by kind, from TensorFlow's profiler (XLA off, one device),
* input-pipeline throughput alone (images/s): JPEG decode + crop + resize + flip + mask
  (:func:`ctxenc_tf.data.pipeline.training_batches`) and the same from prepared TFRecord shards,
* inference latency for batch 1 and batch 64 (``--latency-batches``): Keras, the SavedModel
  ``serving_default`` signature and every TFLite variant (TFLite files have a batch of 1, so
  batch 64 is 64 invocations),
* the face path on 1- and 12-megapixel photos (:mod:`ctxenc_tf.benchmark.faces`):
  detection, alignment and fill timed side by side, per megapixel and per face.

``--json PATH`` writes every row with its numbers. ``--quick`` runs a 32x32 toy model for
a smoke test; its figures mean nothing.

``--synthetic`` runs only what needs Keras alone, on any backend and without TensorFlow
(:class:`ctxenc_tf.benchmark.suite.KerasAdapter`): the machine, FLOPs, training (with its
overhead and the ratios between precisions) and generator inference on synthetic batches,
in float32, mixed_bfloat16 and mixed_float16, on the devices Keras finds
(``KERAS_BACKEND=jax python -m ctxenc_tf bench --synthetic`` on a GPU machine with JAX).
"""

import json

import keras

from ctxenc_tf.benchmark import suite
from ctxenc_tf.benchmark.timing import PARTS, BenchSettings
from ctxenc_tf.cli.common import (
    add_config_arguments,
    bounded,
    comma_separated,
    command_parser,
    config_from_args,
    one_of,
)
from ctxenc_tf.config import AUTO_PRECISION, PRECISIONS, TFLITE_VARIANTS, RunConfig
from ctxenc_tf.errors import ConfigError
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.output_dir import check_output_path

# The model and batch benchmarked, and the precision the others are compared with: float32,
# whose matmul peak the bench measures.
BASE = RunConfig(batch_size=64, precision="float32")
QUICK = dict(image_size=32, hole_size=16, overlap=2, bottleneck=32, gen_filters=8, disc_filters=8)
QUICK_SETTINGS = dict(steps=2, train_repeats=1, repeats=2, pipeline_batches=3, matmul_size=256)

MODEL_FLAGS = ("image_size", "hole_size", "overlap", "mask_type", "bottleneck", "gen_filters",
               "disc_filters", "discriminator", "adversarial_loss", "batch_size", "precision",
               "strategy", "steps_per_execution", "data_dir")

# The flag of each BenchSettings field: (argparse type, help). The defaults are BenchSettings'.
SETTING_FLAGS = {
    "steps": (bounded(int, 1, 100_000), "timed training steps per fit"),
    "train_repeats": (bounded(int, 1, 1000), "timed fits per training setting, steps timed one by one"),
    "warmup": (bounded(int, 1, 10_000), "untimed training steps first (tracing, XLA compilation)"),
    "repeats": (bounded(int, 1, 10_000), "timed calls per latency figure"),
    "pipeline_batches": (bounded(int, 1, 100_000), "timed input batches"),
    "matmul_size": (bounded(int, 1, 65_536), "side of the peak matmul (unset: 4096 with a GPU, else 2048)"),
    "matmul_repeats": (bounded(int, 1, 1000), "chained matmuls per trial"),
    "calibration_images": (bounded(int, 1, 100_000), "real images calibrating the full_int8 TFLite variant"),
    "variants": (comma_separated(one_of(TFLITE_VARIANTS), empty=True), "TFLite variants to time, comma separated"),
    "latency_batches": (comma_separated(bounded(int, 1, 4096)),
                        "batch sizes of the inference latency rows, comma separated, each 1 to 4096"),
    "skip": (comma_separated(one_of(PARTS), empty=True), f"parts to leave out, comma separated: {', '.join(PARTS)}"),
}


def shown(value) -> str:
    """A default as the flag is written: tuples comma separated."""
    return (",".join(map(str, value)) or "none") if isinstance(value, tuple) else str(value)


def parse_args(argv):
    """The bench's flags: the model and batch (the config fields in :data:`MODEL_FLAGS`)
    and how long and what to measure (:data:`SETTING_FLAGS`)."""
    parser = command_parser("bench", __doc__)
    add_config_arguments(parser, only=MODEL_FLAGS, base=BASE, helps={
        "precision": f"the dtype policy the others are compared with: {', '.join(PRECISIONS)}"})
    parser.add_argument("--quick", action="store_true",
                        help="tiny 32x32 model, batch 8, few steps: a smoke test, figures meaningless")
    for name, (kind, help_text) in SETTING_FLAGS.items():
        default = getattr(BenchSettings, name)
        defaults = [f"default {shown(default)}"] if default is not None else []
        defaults += [f"quick {QUICK_SETTINGS[name]}"] if name in QUICK_SETTINGS else []
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=f"{help_text} ({'; '.join(defaults)})" if defaults else help_text)
    parser.add_argument("--synthetic", action="store_true",
                        help="training and generator inference only, with Keras alone (any backend, "
                             "no TensorFlow), in float32, mixed_bfloat16 and mixed_float16")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    return parser.parse_args(argv)


def settings_from_args(args, data_dir: str) -> BenchSettings:
    """:class:`BenchSettings`: its defaults, then :data:`QUICK_SETTINGS` with ``--quick``,
    then every flag given; ``data_dir`` is the config's."""
    given = {name: getattr(args, name) for name in SETTING_FLAGS if getattr(args, name) is not None}
    return BenchSettings(**{**(QUICK_SETTINGS if args.quick else {}), **given, "data_dir": data_dir})


def adapter_for(synthetic: bool) -> suite.KerasAdapter:
    """What measures the backend-specific rows: Keras alone with ``--synthetic``, else
    TensorFlow (the only backend the full bench runs under)."""
    if synthetic:
        return suite.KerasAdapter()
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"bench: under KERAS_BACKEND={keras.backend.backend()} only --synthetic runs "
                          "(the full bench times TensorFlow's input pipeline and exports)")
    # Imported only here: the full bench needs TensorFlow, --synthetic must not.
    from ctxenc_tf.benchmark.tensorflow_adapter import TensorFlowAdapter

    return TensorFlowAdapter()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.json:
        check_output_path(args.json, "--json", "file")
    measure = adapter_for(args.synthetic)
    base = RunConfig.create(**QUICK, batch_size=8, precision="float32") if args.quick else BASE
    config = config_from_args(args, base=base)
    if config.precision == AUTO_PRECISION:
        raise ConfigError(f"--precision={AUTO_PRECISION}: the bench times every precision against one; name "
                          f"it (default {BASE.precision})")
    settings = settings_from_args(args, config.data_dir)
    print(f"benchmarking {config.model.image_size}x{config.model.image_size} model, global batch {config.batch_size}"
          + (" (--quick: toy sizes, figures meaningless)" if args.quick else ""))
    table = suite.run(config, settings, measure)
    print()
    print(table.markdown())
    if args.json:
        atomic.write_bytes(args.json, json.dumps(table.rows, indent=1).encode())
    return 0
