"""Data: sources and screening, the seeded tf.data pipeline, prepared TFRecords."""
