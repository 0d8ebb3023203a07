"""The only place with private Keras or TensorFlow APIs: what the model needs from each
backend's Keras trainer beyond its public API, one module per backend, each imported only
under its backend (:mod:`~ctxenc_tf.compat.tensorflow_trainer` imports TensorFlow,
:mod:`~ctxenc_tf.compat.jax_trainer` does not). Each workaround names the upstream
behaviour it depends on; ``tests/test_compat.py`` fails when that behaviour changes, so
an upgrade that changes it is noticed, not silently broken."""
