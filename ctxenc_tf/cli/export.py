"""Export a trained checkpoint for deployment and check it against Keras.

Writes, below --out:
  saved_model/<version>/   SavedModel for TensorFlow Serving (signatures serving_default,
                           serving_uint8, serving_bytes, inpaint), written atomically
  tflite/ctxenc_<variant>.tflite   float32, float16, dynamic_int8, full_int8
  config.json              the model's configuration
then runs every export and the Keras model on real images and prints each file's size
and its pixel difference from Keras.
"""

import os

from ctxenc_tf.cli.common import bounded, command_parser
from ctxenc_tf.config import TFLITE_VARIANTS, is_utf8
from ctxenc_tf.errors import ConfigError
from ctxenc_tf.utils.output_dir import check_output_path


def parse_args(argv):
    parser = command_parser("export", __doc__)
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a .keras checkpoint written by train.py (best.keras or final.keras)")
    parser.add_argument("--out", default="exports/ctxenc", metavar="DIR",
                        help="export directory (default: exports/ctxenc); TF Serving's model "
                             "base path is DIR/saved_model")
    parser.add_argument("--version", type=bounded(int, 1, 2**63 - 1), metavar="N",  # TF Serving: int64
                        help="SavedModel version number (default: the next free one)")
    parser.add_argument("--variants", nargs="*", choices=TFLITE_VARIANTS, default=list(TFLITE_VARIANTS),
                        metavar="VARIANT",
                        help=f"TFLite variants to write, any of {', '.join(TFLITE_VARIANTS)} "
                             "(default: all; none given = SavedModel only)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="real images for full_int8 calibration and the parity check "
                             "(default: the model's training data if present, else the bundled faces)")
    parser.add_argument("--calibration-images", type=bounded(int, 1, 100_000), default=64, metavar="N",
                        help="images calibrating full_int8 (default: 64)")
    parser.add_argument("--parity-images", type=bounded(int, 1, 100_000), default=16, metavar="N",
                        help="other images on which each export is compared with Keras (default: 16)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not is_utf8(args.out):
        raise ConfigError(f"--out={ascii(args.out)}: TensorFlow needs a UTF-8 path; rename it")
    check_output_path(args.out, "--out")
    from ctxenc_tf.export.all_formats import export_all

    result = export_all(args.checkpoint, args.out, args.version, args.variants, args.data_dir,
                        args.calibration_images, args.parity_images)
    print(f"done: serve {os.path.dirname(result['saved_model'])} as model 'ctxenc' "
          "(see serving/README.md)")
    return 0

