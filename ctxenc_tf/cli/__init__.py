"""The command-line layer: ``python -m ctxenc_tf <command>``, one module per command."""
