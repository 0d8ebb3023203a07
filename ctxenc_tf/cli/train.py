"""Train a Context Encoder (Pathak et al. 2016) with ``model.fit``.

With no ``--data-dir`` it trains a short demo on the bundled faces; point ``--data-dir``
at CelebA (the folder holding ``img_align_celeba/`` and ``list_eval_partition.txt``) or
any folder of images for a real run. ``--data-dir PHOTOS --prepare DIR --align-faces``
turns a folder of ordinary photos into aligned faces like CelebA's to train on.
"""


import sys

from ctxenc_tf.cli.common import (
    add_config_arguments,
    add_face_arguments,
    add_progress_argument,
    command_parser,
    config_from_args,
    fit_verbose,
    shows_bar,
)
from ctxenc_tf.config import RunConfig
from ctxenc_tf.errors import ConfigError
from ctxenc_tf.utils.output_dir import check_output_path

# The no-argument demo: a quick run on the bundled faces that finishes in about a minute
# on a laptop CPU. Flags given explicitly still win.
DEMO = dict(epochs=2, batch_size=16, bottleneck=512, output_dir="runs/demo")
DEMO_MINUTES = 1.0


def parse_args(argv):
    parser = command_parser("train", __doc__)
    add_config_arguments(parser)
    parser.add_argument("--time-limit", type=float, metavar="MINUTES",
                        help="stop after this many minutes of training (the epoch is finished "
                             "with validation, checkpoint and samples)")
    add_progress_argument(parser, "one per epoch; --align-faces: the skipped files and the summary")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="shorthand for --precision mixed_float16 on a GPU, mixed_bfloat16 "
                             "elsewhere (TPU, CPU)")
    parser.add_argument("--accept-changed-data", action="store_true",
                        help="resume even though the training data changed since the run started "
                             "(files added, removed or modified)")
    parser.add_argument("--prepare", metavar="DIR",
                        help="convert --data-dir (CelebA or an image folder) once into sharded "
                             "TFRecords of --image-size pixels in DIR and exit; then train with "
                             "--data-dir DIR")
    parser.add_argument("--align-faces", action="store_true",
                        help="with --prepare DIR: find every face in the photos of --data-dir "
                             "(searched recursively; the bundled faces when none) and write each one "
                             "aligned as CelebA's img_align_celeba crops (178x218 JPEG) into DIR, "
                             "with faces.csv (landmarks) and aligned.json (counts)")
    add_face_arguments(parser, "with --align-faces: align")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.time_limit is not None and not args.time_limit > 0:
        raise ConfigError(f"--time-limit={args.time_limit:g}: must be a positive number of minutes")
    if args.mixed_precision:
        if args.precision:
            raise ConfigError("--mixed-precision: give either it or --precision, not both")
        from ctxenc_tf.training.strategy import mixed_precision_policy

        args.precision = mixed_precision_policy()
    if args.align_faces and not args.prepare:
        raise ConfigError("--align-faces: needs --prepare DIR, the new folder to write the faces to")
    if args.max_faces is not None and not args.align_faces:
        raise ConfigError("--max-faces: needs --align-faces")
    if args.prepare:
        config = config_from_args(args)
        check_output_path(args.prepare, "--prepare", "new folder")
        if args.align_faces:
            _align_faces(args, config)
        else:
            from ctxenc_tf.data.prepare import prepare_records

            prepare_records(config, args.prepare)
        print(f"train from it with: python train.py --data-dir {args.prepare}")
        return 0
    demo = not args.data_dir
    config = config_from_args(args, base=RunConfig.create(**DEMO) if demo else None)
    time_limit = args.time_limit if args.time_limit is not None else (DEMO_MINUTES if demo else None)
    if demo:
        print("no --data-dir: training the demo on the bundled faces "
              f"(~{DEMO_MINUTES:g} min). For CelebA: python train.py --data-dir /path/to/celeba")

    from ctxenc_tf.training.fit import train

    _, history, paths = train(config, time_limit=None if time_limit is None else time_limit * 60,
                              accept_changed_data=args.accept_changed_data,
                              verbose=fit_verbose(args.progress, sys.stdout.isatty()))
    print(f"{len(history.epoch)} epoch(s) trained in this run; best checkpoint {paths.best}, "
          f"final model {paths.final}, sample grids in {paths.samples}/, "
          f"TensorBoard logs in {paths.logs}/")
    return 0


def _align_faces(args, config: RunConfig) -> None:
    """``--prepare DIR --align-faces``: the faces of ``--data-dir``'s photos, aligned, into DIR."""
    from tqdm import tqdm

    from ctxenc_tf.data.aligned_faces import align_faces

    align_faces(config.data_dir, args.prepare, args.max_faces, args.min_face, args.face_confidence,
                config.exclude, log=tqdm.write,
                progress=lambda photos: tqdm(photos, unit="photo", file=sys.stderr,
                                             disable=not shows_bar(args.progress, sys.stderr.isatty())))
