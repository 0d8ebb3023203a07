"""Training: the model.fit orchestration, callbacks, exact resume, strategies."""
