"""Benchmarks, measured side by side in one run: ``python -m ctxenc_tf bench``.

Prints one Markdown table with

* the machine (CPU model and cores, GPUs, TF version) and its measured matmul peak
  (chained ``N x N`` matmuls in the training compute dtype),
* the model's FLOPs per image: generator and discriminator forward passes counted from
  the layer shapes, and one training step (see :func:`train_flops_per_image`),
* training throughput (images/s, min and median over single steps) of the model at the
  given global batch with XLA and without, and with XLA in mixed precision, on synthetic
  in-memory batches (``model.fit``, the strategy ``train.py`` would pick), as a fraction
  of the highest matmul peak measured so far (the peak is measured again after each
  setting: a shared machine's speed drifts), with the ratios between them; compile time
  and the wait between the last step and ``fit`` returning on their own rows,
* input-pipeline throughput alone (images/s): JPEG decode + crop + resize + flip + mask
  (:func:`ctxenc_tf.pipeline.training_batches`) and the same from prepared TFRecord shards,
* inference latency for batch 1 and batch 64 (``--latency-batches``): Keras, the SavedModel
  ``serving_default`` signature and every TFLite variant (TFLite files have a batch of 1, so
  batch 64 is 64 invocations),
* the face path on 1- and 12-megapixel photos (:mod:`ctxenc_tf.benchmark.faces`):
  detection, alignment and fill timed side by side, per megapixel and per face.

``--json PATH`` writes every row with its numbers. ``--quick`` runs a 32x32 toy model for
a smoke test; its figures mean nothing.

``--synthetic`` runs only what needs Keras alone, on any backend and without TensorFlow
(:mod:`ctxenc_tf.benchmark.synthetic`): training and generator inference on synthetic
batches, in float32, mixed_bfloat16 and mixed_float16, on the devices Keras finds
(``KERAS_BACKEND=jax python -m ctxenc_tf bench --synthetic`` on a GPU machine with JAX).
"""

import json

import keras

from ctxenc_tf.benchmark import synthetic
from ctxenc_tf.benchmark.timing import PARTS, BenchSettings
from ctxenc_tf.cli.common import add_config_arguments, command_parser, config_from_args
from ctxenc_tf.config import RunConfig
from ctxenc_tf.errors import ConfigError
from ctxenc_tf.inference.formats import VARIANTS
from ctxenc_tf.model.replicas import device_kind
from ctxenc_tf.utils import atomic

QUICK = dict(image_size=32, hole_size=16, overlap=2, bottleneck=32, gen_filters=8, disc_filters=8)

MODEL_FLAGS = ("image_size", "hole_size", "overlap", "mask_type", "bottleneck", "gen_filters",
               "disc_filters", "discriminator", "adversarial_loss", "batch_size", "precision",
               "strategy", "steps_per_execution", "data_dir")


def parse_args(argv):
    """The bench's flags: the model and batch (the config fields in :data:`MODEL_FLAGS`)
    and how long to measure."""
    parser = command_parser("bench", __doc__)
    add_config_arguments(parser, only=MODEL_FLAGS)
    parser.add_argument("--quick", action="store_true",
                        help="tiny 32x32 model, batch 8, few steps: a smoke test, figures meaningless")
    parser.add_argument("--steps", type=int, help="timed training steps per fit (default 10, quick 2)")
    parser.add_argument("--train-repeats", type=int,
                        help="timed fits per training setting, steps timed one by one (default 3, quick 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first (default 2)")
    parser.add_argument("--repeats", type=int, help="timed calls per latency figure (default 10, quick 2)")
    parser.add_argument("--pipeline-batches", type=int, help="timed input batches (default 20, quick 3)")
    parser.add_argument("--matmul-size", type=int, help="side of the peak matmul (default 4096 with a GPU, "
                                                        "else 2048; quick 256)")
    parser.add_argument("--matmul-repeats", type=int, default=5, help="chained matmuls per trial (default 5)")
    parser.add_argument("--calibration-images", type=int, default=16,
                        help="real images calibrating the full_int8 TFLite variant (default 16)")
    parser.add_argument("--variants", default="float32,float16,dynamic_int8,full_int8",
                        help="TFLite variants to time, comma separated (default all four)")
    parser.add_argument("--latency-batches", default="1,64", metavar="N,N,...",
                        help="batch sizes of the inference latency rows (default 1,64)")
    parser.add_argument("--skip", default="",
                        help=f"comma-separated parts to leave out: {', '.join(PARTS)}")
    parser.add_argument("--synthetic", action="store_true",
                        help="training and generator inference only, with Keras alone (any backend, "
                             "no TensorFlow), in float32, mixed_bfloat16 and mixed_float16")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    skip = tuple(s for s in args.skip.split(",") if s)
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ConfigError(f"--variants: unknown {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    try:
        latency_batches = tuple(int(n) for n in args.latency_batches.split(","))
    except ValueError:
        latency_batches = ()
    if not latency_batches or min(latency_batches) < 1 or max(latency_batches) > 4096:
        raise ConfigError(f"--latency-batches {args.latency_batches!r}: expected comma-separated batch sizes "
                          "from 1 to 4096, e.g. 1,8,64")
    bad = [s for s in skip if s not in PARTS]
    if bad:
        raise ConfigError(f"--skip: unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    for name in ("steps", "train_repeats", "warmup", "repeats", "pipeline_batches", "matmul_size", "matmul_repeats",
                 "calibration_images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}={value}: must be positive")
    if not args.synthetic and keras.backend.backend() != "tensorflow":
        raise ConfigError(f"bench: under KERAS_BACKEND={keras.backend.backend()} only --synthetic runs "
                          "(the full bench times TensorFlow's input pipeline and exports)")
    base = RunConfig.create(**QUICK, batch_size=8) if args.quick else RunConfig(batch_size=64)
    config = config_from_args(args, base=base)
    gpu = device_kind() == "gpu"
    settings = BenchSettings(
        steps=args.steps or (2 if args.quick else 10), warmup=args.warmup,
        train_repeats=args.train_repeats or (1 if args.quick else 3),
        repeats=args.repeats or (2 if args.quick else 10),
        pipeline_batches=args.pipeline_batches or (3 if args.quick else 20),
        matmul_size=args.matmul_size or (256 if args.quick else 4096 if gpu else 2048),
        matmul_repeats=args.matmul_repeats, calibration_images=args.calibration_images,
        variants=variants, latency_batches=latency_batches, skip=skip, data_dir=config.data_dir)
    print(f"benchmarking {config.model.image_size}x{config.model.image_size} model, global batch {config.batch_size}"
          + (" (--quick: toy sizes, figures meaningless)" if args.quick else ""))
    if args.synthetic:
        table = synthetic.run(config, settings)
    else:
        # Imported only here: the full bench needs TensorFlow, --synthetic must not.
        from ctxenc_tf.benchmark import measurements

        table = measurements.run(config, settings)
    print()
    print(table.markdown())
    if args.json:
        atomic.write_bytes(args.json, json.dumps(table.rows, indent=1).encode())
    return 0
