"""``python -m ctxenc_tf <command>``: see :mod:`ctxenc_tf.cli.main`."""

import sys

from ctxenc_tf.cli.main import main

sys.exit(main())
