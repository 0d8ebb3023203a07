"""Small helpers every layer may use: atomic writes, output folders, pixel ranges."""
