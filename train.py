#!/usr/bin/env python3
"""Train a Context Encoder: the same as ``python -m ctxenc_tf train`` (see ``--help``)."""

import sys

from ctxenc_tf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
