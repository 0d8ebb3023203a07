"""``python -m ctxenc_tf <command> [flags]`` (also the ``ctxenc-tf`` console script): the
one command-line entry. Each command lives in its own module here and is imported only
when it runs, after the Keras backend was checked (:mod:`~ctxenc_tf.cli.backend_check`):
``train.py``, ``export.py``, ``python -m ctxenc_tf`` and the console script all start here,
and nothing imported until then imports Keras."""

import importlib
import sys

from ctxenc_tf.cli.backend_check import backend_problem
from ctxenc_tf.cli.common import run_main, silence_native_logs

# command -> (module below ctxenc_tf.cli, one line for the overview)
COMMANDS = {
    "train": ("train", "train a context encoder with model.fit (no flags: a demo on the bundled faces)"),
    "export": ("export", "export a .keras checkpoint: SavedModel for TF Serving + 4 TFLite variants"),
    "inpaint": ("inpaint", "fill the hole of your own photos (any model format)"),
    "evaluate": ("evaluate", "PSNR/SSIM/L1/L2 of a model against mean-fill and Telea baselines"),
    "bench": ("bench", "training, input-pipeline and inference speed, measured side by side"),
    "serve-client": ("serve_client", "complete photos with a model served by TensorFlow Serving"),
    "app": ("app", "a local web app: open a photo, paint the hole, get the fill (Gradio)"),
}


def usage() -> str:
    lines = ["usage: python -m ctxenc_tf <command> [flags]   (<command> --help for its flags)", "",
             "commands:"]
    lines += [f"  {name:<13} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the command named by ``argv[0]`` with the rest of ``argv``; returns the exit
    status (2 with one ``error:`` line for an unknown command or an unusable ``KERAS_BACKEND``)."""
    problem = backend_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if "--verbose" not in rest:
        silence_native_logs()
    module = importlib.import_module(f"ctxenc_tf.cli.{COMMANDS[name][0]}")
    return run_main(module.main, rest)
