"""Export: SavedModel for TF Serving, TFLite variants, parity with Keras."""
