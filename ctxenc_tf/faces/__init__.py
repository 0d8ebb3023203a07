"""Faces in ordinary photos: finding them (:mod:`.detector`) and mapping each one to and
from the frame of CelebA's aligned crops (:mod:`.alignment`), so that a model trained on
``img_align_celeba`` sees every face as it saw its training data."""
