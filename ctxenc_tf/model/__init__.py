"""The model: hole-filling layer, networks, masks, losses, metrics and the training model, in
``keras.ops`` for every Keras backend (only the TensorFlow training steps import TensorFlow)."""
