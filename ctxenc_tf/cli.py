"""Command-line plumbing shared by every command: config flags generated from the
:class:`~ctxenc_tf.config.Config` dataclass, presets, and one-line errors."""

import argparse
import dataclasses
import sys

from ctxenc_tf.config import PRESETS, Config, ConfigError


def add_config_arguments(parser: argparse.ArgumentParser, only=None) -> None:
    """Add a ``--flag`` for every CLI field of :class:`Config` (or those named in ``only``),
    plus ``--preset``. Defaults are left as ``None`` so presets and files can fill them."""
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="loss/discriminator preset: 'paper' (L2 + BCE, DCGAN D, the default) "
                             "or 'seed' (L1 + least squares, PatchGAN D)")
    for f in dataclasses.fields(Config):
        if not f.metadata.get("cli") or (only and f.name not in only):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default!r})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), f.type)
            parser.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                                help=help_text)


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Build the :class:`Config` from parsed flags: ``base`` (or defaults), then the preset,
    then every flag given explicitly. Raises :class:`ConfigError` on a bad value."""
    values = (base or Config()).to_dict()
    if getattr(args, "preset", None):
        values.update(PRESETS[args.preset])
    for f in dataclasses.fields(Config):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    # A new image size without an explicit hole keeps the paper's proportions
    # (hole = half the image, overlap = 1/16 of the hole: 128 -> 64 and 4).
    if getattr(args, "image_size", None) and getattr(args, "hole_size", None) is None:
        values["hole_size"] = args.image_size // 2
        if getattr(args, "overlap", None) is None:
            values["overlap"] = max(1, values["hole_size"] // 16)
    return Config.from_dict(values)


def fail(message: str, code: int = 2):
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def unique_stems(stems) -> list:
    """Output file-name stems with repeats numbered (``a``, ``a_2``, ``a_3``), so that two
    inputs with one name never write the same output file."""
    seen, unique = {}, []
    for stem in stems:
        n = seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if n == 1 else f"{stem}_{n}")
    return unique


def run_main(main, argv=None) -> int:
    """Run ``main(argv)``, turning expected failures (bad config, data, files) into one
    ``error:`` line and exit status 2 instead of a traceback."""
    import tensorflow as tf

    from ctxenc_tf.callbacks import TrainingError
    from ctxenc_tf.checkpoint import CheckpointError
    from ctxenc_tf.data import DataError

    try:
        return main(argv) or 0
    except (ConfigError, DataError, CheckpointError, TrainingError, OSError) as e:
        fail(str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}")
    except tf.errors.InvalidArgumentError as e:  # e.g. a JPEG whose header is fine but data is not
        fail(f"cannot decode an input image ({e.message.strip().splitlines()[-1][:200]})")
    except KeyboardInterrupt:
        fail("interrupted", 130)
