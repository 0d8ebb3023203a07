"""Command-line plumbing shared by every command: config flags generated from the
:class:`~ctxenc_tf.config.ModelConfig` and :class:`~ctxenc_tf.config.RunConfig`
dataclasses, presets, and one-line errors."""

import argparse
import os
import sys

from ctxenc_tf.config import PRESETS, RunConfig, cli_fields
from ctxenc_tf.errors import CtxencError, one_line


def command_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of ``python -m ctxenc_tf <command>``, with the flags every
    command has (``--verbose``, handled by :mod:`ctxenc_tf.cli.main`)."""
    parser = argparse.ArgumentParser(prog=f"python -m ctxenc_tf {command}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's and TFLite's own log lines (hidden by default)")
    return parser


# --progress, the same on every command that shows progress: Keras and tqdm redraw their
# bars with \r and \b even into a file or pipe, which garbles logs.
PROGRESS = ("auto", "bar", "lines", "off")
FIT_VERBOSE = {"bar": 1, "lines": 2, "off": 0}  # model.fit's verbose for each style


def add_progress_argument(parser: argparse.ArgumentParser, lines: str) -> None:
    """``--progress {auto,bar,lines,off}``; ``lines`` says what the command prints in
    ``lines`` style (see :func:`progress_style`)."""
    parser.add_argument("--progress", choices=PROGRESS, default="auto",
                        help=f"bar (redrawn in place), lines ({lines}, for log files) or off; auto "
                             "(default): bar on a terminal, lines when the output goes to a file or pipe")


def progress_style(progress: str, terminal: bool) -> str:
    """``--progress`` resolved to ``"bar"``, ``"lines"`` or ``"off"``: ``auto`` is the bar
    when the bar's stream is a ``terminal``, lines elsewhere."""
    if progress == "auto":
        return "bar" if terminal else "lines"
    return progress


def fit_verbose(progress: str, terminal: bool) -> int:
    """``model.fit``'s ``verbose`` for ``--progress`` (:data:`FIT_VERBOSE`)."""
    return FIT_VERBOSE[progress_style(progress, terminal)]


def shows_bar(progress: str, terminal: bool) -> bool:
    """Whether a tqdm bar is shown for ``--progress`` (tqdm has no lines style: there a
    command prints its per-file notes and its summary only)."""
    return progress_style(progress, terminal) == "bar"


def bounded(kind, low, high):
    """An argparse ``type``: ``kind`` (``int`` or ``float``) from ``low`` to ``high``
    inclusive, finite; anything else is refused with argparse's one-line usage error."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not low <= value <= high:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {text}")
        return value
    return parse


def one_of(choices):
    """An argparse ``type``: one of the strings ``choices``; anything else is refused with
    argparse's one-line usage error naming them."""
    def parse(text):
        if text not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text
    return parse


def comma_separated(item, empty=False):
    """An argparse ``type``: comma-separated values, each parsed by ``item`` (another such
    type, e.g. :func:`bounded`), as a tuple; ``""`` is the empty tuple only when ``empty``."""
    def parse(text):
        values = tuple(item(part) for part in text.split(",") if part)
        if not values and not empty:
            raise argparse.ArgumentTypeError(f"expected at least one value, got {text!r}")
        return values
    return parse


def add_face_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--max-faces``, ``--min-face`` and ``--face-confidence``: which detected faces
    ``what`` (e.g. "fill") takes, as :func:`ctxenc_tf.faces.detector.select_faces` applies them."""
    from ctxenc_tf.faces.detector import MIN_CONFIDENCE, MIN_FACE

    parser.add_argument("--max-faces", type=bounded(int, 1, 10_000), default=None, metavar="N",
                        help=f"{what} at most the N largest faces of a photo (default: all)")
    parser.add_argument("--min-face", type=bounded(float, 1, 1e6), default=MIN_FACE, metavar="PX",
                        help=f"skip faces whose box is smaller than PX pixels (default {MIN_FACE})")
    parser.add_argument("--face-confidence", type=bounded(float, 0, 1), default=MIN_CONFIDENCE, metavar="P",
                        help=f"the detector's lowest accepted score (default {MIN_CONFIDENCE}; "
                             "hands and patterns score about 0.8)")


def add_config_arguments(parser: argparse.ArgumentParser, only=None, base: RunConfig | None = None,
                         helps: dict | None = None) -> None:
    """Add a ``--flag`` for every CLI field of the model and run settings (or those named in ``only``),
    plus ``--preset``. Defaults are left as ``None`` so presets and files can fill them; the
    help shows ``base``'s values (the command's own defaults), else the fields' defaults, and
    ``helps`` (field name -> text) replaces a field's own help where the command differs."""
    shown = {**base.to_dict(), **base.model.to_dict()} if base else {}
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="'paper' (the defaults: Pathak et al.'s centre model, L2 + BCE, DCGAN D) "
                             "or 'seed' (the seed project's PyTorch-GAN setup: its generator and "
                             "PatchGAN, L1 + least squares, white random squares, batch 8); "
                             "explicit flags win over the preset")
    for f in cli_fields():
        if only and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{(helps or {}).get(f.name, f.metadata['help'])} (default: {shown.get(f.name, f.default)!r})"
        if f.type in (bool, "bool", "bool | None"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), f.type)
            parser.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                                help=help_text)


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """Build the :class:`RunConfig` from parsed flags: ``base`` (or defaults), then the
    preset, then every flag given explicitly. Raises :class:`~ctxenc_tf.errors.ConfigError` on a bad value."""
    base = base or RunConfig()
    values = {**base.to_dict(), **base.model.to_dict()}
    del values["model"]
    if getattr(args, "preset", None):
        values.update(PRESETS[args.preset])
    for f in cli_fields():
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    # A new image size without an explicit hole keeps the paper's proportions
    # (hole = half the image, overlap = 1/16 of the hole: 128 -> 64 and 4; none stays none).
    if getattr(args, "image_size", None) and getattr(args, "hole_size", None) is None:
        values["hole_size"] = args.image_size // 2
        if getattr(args, "overlap", None) is None and values["overlap"]:
            values["overlap"] = max(1, values["hole_size"] // 16)
    return RunConfig.create(**values)


def silence_native_logs() -> None:
    """Keep TensorFlow's and TFLite's own log lines (C++ start-up chatter, CUDA probing,
    ``fully_quantize: ...`` from the converter, ``INFO: Created TensorFlow Lite XNNPACK
    delegate``, tf.data warnings) off the terminal for the rest of the process: file
    descriptor 2, where native code writes, goes to ``/dev/null``, while Python's
    ``sys.stderr`` (our ``error:`` lines, progress bars, tracebacks) keeps the real one.
    Called by the command-line entry unless ``--verbose``, never on import of the package."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding,
                           errors=sys.stderr.errors)
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # its Python-side warnings too


def printable(message) -> str:
    """``message`` with the characters that would break or garble one line (newlines,
    control characters, undecodable bytes of a file name) shown escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(message))


def fail(message: str, code: int = 2):
    """Print ``error: message`` as one line on stderr (:func:`printable`) and exit with ``code``."""
    print(f"error: {printable(message)}", file=sys.stderr)
    sys.exit(code)


def run_main(main, argv=None) -> int:
    """Run ``main(argv)``, turning expected failures (bad config, data, files) into one
    ``error:`` line and exit status 2 instead of a traceback."""
    try:
        return main(argv) or 0
    except CtxencError as e:
        fail(str(e))
    except OSError as e:
        fail(one_line(e))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as e:
        # TensorFlow's own errors, matched by module so that this one does not import it:
        # InvalidArgumentError is a file whose header is fine but data is not (a JPEG),
        # DataLossError a damaged TFRecord or cache, others say what failed on their last line.
        if not type(e).__module__.startswith("tensorflow"):
            raise
        kind = type(e).__name__
        if kind == "InvalidArgumentError":
            fail(f"cannot decode an input image ({one_line(e, last=True)})")
        if kind == "DataLossError":
            fail(f"a data file is damaged ({one_line(e, last=True)}); prepare or cache it again")
        fail(f"TensorFlow {kind}: {one_line(e, last=True)}")
