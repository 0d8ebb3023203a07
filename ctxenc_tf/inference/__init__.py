"""Inference: one runner over every model format, photos, evaluation, the serving client."""
