"""Inpaint your own photos with a trained context encoder.

    python -m ctxenc_tf inpaint --model runs/faces128/best.keras photo.jpg photos/ --out filled/

The model (a ``.keras`` checkpoint, a SavedModel or a ``.tflite`` file) sees a square
window of the photo resized to its input size: by default the photo's central square
with the model's centre hole; with ``--mask`` (white = hole, for models trained with
random masks) a square around the drawn hole. The prediction is scaled back to the
photo's resolution and blended into the hole only: every pixel outside the hole keeps
its exact value. Photos of any size and mode (RGB, RGBA, grayscale, palette, CMYK) are
accepted, EXIF rotation is applied, alpha is kept untouched and grayscale stays
grayscale. Outputs are PNG (lossless), written atomically as ``OUT/<name>_filled.png``
(and ``OUT/<name>_side_by_side.png`` with ``--side-by-side``).

With ``--faces`` every face in the photo is found (MTCNN), aligned as CelebA's crops are,
filled there and put back: centre models fill each face's centre hole (over nose and
mouth), random-mask models the part of ``--mask`` each face's frame holds. A photo with no
usable face is skipped with one line (exit status 1). docs/faces.md explains the alignment.
"""

import os
import sys

from ctxenc_tf.cli.common import add_face_arguments, add_progress_argument, command_parser, shows_bar
from ctxenc_tf.errors import ConfigError, DataError
from ctxenc_tf.faces.detector import FaceDetector
from ctxenc_tf.inference.face_jobs import centre_hole_misses, plan_faces
from ctxenc_tf.inference.inpaint import (
    OUTPUT_SUFFIXES,
    collect_inputs,
    fill_jobs,
    filled_png,
    joint_hole,
)
from ctxenc_tf.inference.photos import (
    PhotoError,
    encode_png,
    fit_mask,
    photo_job,
    read_mask,
    read_photo,
    side_by_side,
)
from ctxenc_tf.inference.runner import load_runner
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.output_dir import check_output_path, claim_targets


def parse_args(argv):
    p = command_parser("inpaint", __doc__)
    p.add_argument("inputs", nargs="+", metavar="PHOTO_OR_DIR", help="image files and/or folders")
    p.add_argument("--model", required=True,
                   help="a .keras checkpoint, a SavedModel export directory or a .tflite file")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--mask", help="mask image, white (or opaque) = hole, same size or aspect "
                                  "ratio as the photos; needs a model trained with random masks")
    p.add_argument("--side-by-side", action="store_true",
                   help="also write <name>_side_by_side.png: original | hole | filled")
    p.add_argument("--faces", action="store_true",
                   help="find every face, align it as CelebA's crops, fill it and put it back "
                        "(for models trained on faces; docs/faces.md)")
    add_face_arguments(p, "with --faces: fill")
    p.add_argument("--batch-size", type=int, default=8, help="photos per model call (default 8)")
    add_progress_argument(p, "no bar, only the notes on photos and the summary")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (never the input photos or the mask)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch-size={args.batch_size}: must be positive")
    if args.max_faces is not None and not args.faces:
        p.error("--max-faces needs --faces")
    return args


def main(argv=None):
    from tqdm import tqdm

    args = parse_args(argv)
    inputs = collect_inputs(args.inputs, args.out)
    targets = [os.path.join(args.out, stem + suffix) for _, stem in inputs
               for suffix in OUTPUT_SUFFIXES[:1 + args.side_by_side]]
    claim_targets(targets, [path for path, _ in inputs] + ([args.mask] if args.mask else []), args.overwrite)
    user_hole = read_mask(args.mask) if args.mask else None
    check_output_path(args.out, "--out")
    runner = load_runner(args.model)
    config = runner.config
    if user_hole is not None and not config.takes_any_hole:
        raise DataError(f"--mask: {args.model} was trained with centre holes only "
                             "(mask type 'center'); train with --mask-type random_region or "
                             "random_square to fill drawn holes")
    detector = _detector(args, user_hole is None)
    skipped = written = 0
    bar = tqdm(total=len(inputs), unit="photo", disable=not shows_bar(args.progress, sys.stderr.isatty()),
               file=sys.stderr)
    for start in range(0, len(inputs), args.batch_size):
        planned = []
        for path, stem in inputs[start:start + args.batch_size]:
            try:
                photo = read_photo(path)
                hole = None if user_hole is None else fit_mask(user_hole, photo.rgb.shape[:2], args.mask)
                if args.faces:
                    jobs, notes = plan_faces(photo, detector.detect(photo.rgb), config, hole,
                                             args.max_faces, args.min_face)
                    for note in notes:
                        bar.write(f"{path}: {note}", file=sys.stderr)
                else:
                    jobs = [photo_job(photo, config, hole)]
                    missed = detector and centre_hole_misses(photo.rgb.shape[:2], detector.detect(photo.rgb), config)
                    if missed:
                        bar.write(f"{path}: {missed}; --faces fills each face's own hole", file=sys.stderr)
                planned.append((stem, jobs))
            except PhotoError as e:
                skipped += 1
                bar.write(f"skipped {path}: {e}", file=sys.stderr)
                bar.update(1)
        if not planned:
            continue
        for (stem, jobs), filled in zip(planned, fill_jobs(runner, [jobs for _, jobs in planned])):
            atomic.write_bytes(os.path.join(args.out, stem + OUTPUT_SUFFIXES[0]), filled_png(jobs, filled))
            if args.side_by_side:
                outlines = [job.hole for job in jobs] if args.faces else ()
                atomic.write_bytes(os.path.join(args.out, stem + OUTPUT_SUFFIXES[1]),
                                   encode_png(side_by_side(jobs[0].photo, filled, joint_hole(jobs), config,
                                                           outlines)))
            written += 1
            bar.update(1)
    bar.close()
    print(f"wrote {written} filled image(s) to {args.out}"
          + (f"; skipped {skipped} unusable file(s), see above" if skipped else ""))
    return 1 if skipped else 0


def _detector(args, centre_holes: bool):
    """The face detector ``--faces`` needs, or, for a centre-hole run without it, the one
    that tells whether the centre hole misses the photo's face (``None`` when there is no
    detector to ask: that hint is worth no error)."""
    if args.faces:
        return FaceDetector(args.face_confidence)
    if not centre_holes:
        return None
    try:
        return FaceDetector(args.face_confidence)
    except ConfigError:
        return None
