"""Evaluate a trained context encoder against two classical baselines.

    python -m ctxenc_tf evaluate --model runs/celeba/best.keras --data-dir /data/celeba --out runs/eval

For every image (CelebA's test split, or a folder) the model fills the hole (the centre
hole for centre models, fixed seeded random holes otherwise), and so do the baselines
(mean-colour fill, OpenCV Telea diffusion; see :mod:`ctxenc_tf.inference.baselines`).
Every method keeps the truth outside the hidden core (the overlap ring is pasted back,
as the original code's test does), and is measured on the same three regions: the
hidden core (the main score), the hole, and the whole image. In the literature's
conventions (images in ``[0, 1]``):

* L1 (%): mean absolute error x 100, L2 (%): mean squared error x 100 (as in Pathak et
  al. 2016, Table 1),
* PSNR (dB): per-image PSNR with peak 1, averaged over images,
* SSIM: 11x11 Gaussian windows (``tf.image.ssim``'s), averaged over the windows centred
  in the region, then over images.

Writes to ``--out``: ``metrics.md`` (table), ``metrics.json`` (means, standard deviations
and the run's provenance), ``per_image.csv`` and ``worst_best.png`` (the cases with the
lowest and highest core PSNR of the model, next to the baselines).

With ``--faces`` the data are ordinary photos: every face is found, aligned into the
model's square as CelebA's crops are framed, and each face is one example, measured in
that aligned frame for the model and both baselines alike (docs/faces.md).
"""

import os
import sys

from ctxenc_tf.cli.common import add_face_arguments, add_progress_argument, command_parser, fail, shows_bar
from ctxenc_tf.config import MASK_TYPES
from ctxenc_tf.data import records, screening, sources
from ctxenc_tf.errors import DataError
from ctxenc_tf.faces.detector import FaceDetector
from ctxenc_tf.inference import baselines
from ctxenc_tf.inference.evaluation import (
    METHOD_NAMES,
    OUTPUT_FILES,
    SPLITS,
    eval_dataset,
    evaluation_config,
    face_batches,
    list_files,
    run_evaluation,
    write_outputs,
)
from ctxenc_tf.inference.runner import load_runner
from ctxenc_tf.run_files import SPLIT
from ctxenc_tf.utils.output_dir import check_output_path, claim_targets


def parse_args(argv):
    p = command_parser("evaluate", __doc__)
    p.add_argument("--model", required=True,
                   help="a .keras checkpoint, a SavedModel export directory or a .tflite file")
    p.add_argument("--data-dir", help="CelebA root (img_align_celeba/ + list_eval_partition.txt) "
                                      "or an image folder (default: the model's training data)")
    p.add_argument("--split", choices=SPLITS,
                   help="CelebA: test (default), val or train. A folder: all (default), or val / "
                        "train as the model's training run split it")
    p.add_argument("--out", required=True, help="output folder for the table, JSON, CSV and grid")
    p.add_argument("--only", default="", metavar="PATTERNS",
                   help="evaluate only files whose names match these comma-separated patterns, "
                        "e.g. 'video-carphone*' for a person the model was trained without (--exclude)")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most this many images (0 = all)")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    p.add_argument("--baselines", default="mean,telea",
                   help="comma-separated baselines to run: mean, telea, or none (default mean,telea)")
    p.add_argument("--mask-type", choices=MASK_TYPES,
                   help="hole shape for models trained with random masks (default: the model's)")
    p.add_argument("--grid-count", type=int, default=4,
                   help="worst and best cases shown in worst_best.png (default 4 each)")
    p.add_argument("--faces", action="store_true",
                   help="the data are ordinary photos: align each face as CelebA's crops first, "
                        "one example per face (docs/faces.md)")
    add_face_arguments(p, "with --faces: measure")
    add_progress_argument(p, "no bar, only the summary")
    args = p.parse_args(argv)
    for name in ("limit", "batch_size", "grid_count"):
        if getattr(args, name) < (0 if name == "limit" else 1):
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be "
                    + ("non-negative" if name == "limit" else "positive"))
    names = [] if args.baselines.strip() in ("", "none") else [b.strip() for b in args.baselines.split(",")]
    unknown = [b for b in names if b not in baselines.BASELINES]
    if unknown:
        p.error(f"--baselines: unknown {', '.join(unknown)}; choose from "
                f"{', '.join(baselines.BASELINES)} or none")
    args.baselines = list(dict.fromkeys(names))
    if args.max_faces is not None and not args.faces:
        p.error("--max-faces needs --faces")
    return args


def main(argv=None):
    args = parse_args(argv)
    if "telea" in args.baselines:
        try:
            baselines.require_opencv()
        except ImportError as e:
            fail(str(e))
    check_output_path(args.out, "--out")
    # evaluate replaces its own reports in --out; a killed run's half-written ones go first
    claim_targets([os.path.join(args.out, name) for name in OUTPUT_FILES], [], overwrite=True)
    runner = load_runner(args.model)
    config = evaluation_config(runner.config, args.mask_type)
    trained_dir = config.trained_on.get("data_dir", "")
    data_dir = records.source_folder(args.data_dir or trained_dir or sources.BUNDLED_FACES)
    split = args.split or ("test" if sources.celeba_layout(data_dir) else "all")
    # a checkpoint in its run's folder has the run's split.json beside it
    split_file = os.path.join(os.path.dirname(os.path.abspath(args.model)), SPLIT)
    files, described, note = list_files(data_dir, split, config, split_file)
    if args.only:
        files = [f for f in files if sources.matches(f, args.only)]
        described += f" matching {args.only}"
    files, skipped = screening.screen_files(files[:args.limit] if args.limit else files)
    if not files:
        raise DataError(f"{data_dir}: no usable image in the {split} split")
    print(f"{runner.describe()}\nevaluating on {len(files)} images: {described} of {data_dir}"
          + (f" ({len(skipped)} unreadable skipped)" if skipped else ""))
    if note:
        print(note)
    excluded = config.trained_on.get("exclude", "")
    if excluded and all(sources.matches(f, excluded) for f in files):
        print(f"none of these images trained the model (its run left out {excluded})")
    elif split == "all" and os.path.realpath(trained_dir or sources.BUNDLED_FACES) == os.path.realpath(data_dir):
        print("note: this is the model's training folder; --split val keeps to its held-out images")

    seed = config.trained_on.get("seed", 0)
    counts = {}
    if args.faces:
        batches = face_batches(files, config, FaceDetector(args.face_confidence), args.batch_size, seed,
                               args.max_faces, args.min_face, counts)
    else:
        batches = eval_dataset(files, config, args.batch_size, seed, config.trained_on.get("resize") == "stretch")
    rows, extremes, seconds = run_evaluation(runner, config, batches, data_dir, args.baselines,
                                             args.grid_count, shows_bar(args.progress, sys.stderr.isatty()),
                                             None if args.faces else len(files))
    for line in counts.get("left_out", []) + [f"skipped {p}: {r}" for p, r in counts.get("unreadable", [])]:
        print(line)
    if args.faces:
        print(f"{counts['faces']} face(s) in {counts['photos']} photo(s); {len(counts['no_face'])} photo(s) "
              "without a usable face"
              + (f": {', '.join(counts['no_face'][:5])}" + (" ..." if len(counts['no_face']) > 5 else "")
                                          if counts["no_face"] else ""))
    if not rows:
        raise DataError(f"{data_dir}: " + ("no usable face in the photos" if args.faces else
                                           f"none of the {len(files)} images could be decoded"))
    report = {"model": args.model, "model_kind": runner.kind, "data_dir": data_dir,
              "split": split, "split_description": described, "images": len(rows),
              "skipped": [{"file": f, "reason": r} for f, r in skipped],
              "baselines": args.baselines, "config": config.to_dict(),
              **({"faces": {"photos": counts["photos"], "faces": counts["faces"],
                            "no_face": counts["no_face"], "left_out": counts["left_out"],
                            "unreadable": [{"file": f, "reason": r} for f, r in counts["unreadable"]]}}
                 if args.faces else {}),
              "seconds": round(seconds, 1)}
    columns = ["masked input"] + [METHOD_NAMES[m] for m in ["model"] + args.baselines] + ["original"]
    table = write_outputs(args.out, report, rows, extremes, columns)
    print(f"\n{table}\n\nwrote metrics.md, metrics.json, per_image.csv and worst_best.png "
          f"to {args.out}")
    return 0
