"""The model: hole-filling layer, networks, masks, losses, metrics and the training model."""
