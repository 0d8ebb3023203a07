#!/usr/bin/env python3
"""Export a checkpoint for deployment: the same as ``python -m ctxenc_tf export`` (see ``--help``)."""

import sys

from ctxenc_tf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
