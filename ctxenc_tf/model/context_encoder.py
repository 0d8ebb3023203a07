"""The context-encoder training model: a ``keras.Model`` with custom ``train_step`` and
``test_step`` (as in the keras.io DCGAN example), driven by ``compile()`` and ``fit()``.
Everything here is ``keras.ops``; the steps, the one backend-specific part, are
:mod:`~ctxenc_tf.model.tensorflow_steps` or :mod:`~ctxenc_tf.model.jax_steps`.

Data: ``(images, masks)`` batches, images NHWC float32 in ``[-1, 1]``, masks
``[N, S, S, 1]`` in ``{0, 1}`` (1 = hole).
"""

import keras
from keras import ops

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.model import losses, masks, metrics
from ctxenc_tf.model.networks import build_discriminator, build_generator

# The training steps (with the Adam class that trains fastest there) are the one
# backend-specific part, chosen once at import as Keras chooses its own trainer
# (keras/src/backend/__init__.py); each module is imported only under its backend, so
# the model imports no TensorFlow under JAX or PyTorch.
if keras.backend.backend() == "tensorflow":
    from ctxenc_tf.model.tensorflow_steps import TensorFlowSteps as BackendSteps
elif keras.backend.backend() == "jax":
    from ctxenc_tf.model.jax_steps import JaxSteps as BackendSteps
else:
    from ctxenc_tf.model.no_steps import NoSteps as BackendSteps

METRIC_NAMES = ("g_loss", "d_loss", "rec_loss", "adv_loss", "psnr", "l1")


def crop_to_output(x, mask, config: ModelConfig):
    """Cut the generator's output region out of a full ``[N, S, S, C]`` tensor: the
    centre ``hole_size`` square for the centre model, the ``hole_size`` square around
    each hole of ``mask`` (``[N, S, S, 1]``) for random squares, the whole image for
    random regions."""
    if config.predicts_full_image:
        return x
    h = config.hole_size
    if config.mask_type == "center":
        o = config.hole_offset
        return x[:, o:o + h, o:o + h, :]
    return masks.crop_box(x, masks.box_offsets(mask, h), h)


def paste_prediction(images, prediction, mask, config: ModelConfig):
    """Composite the prediction into the images: hidden core replaced, the overlap ring
    blended linearly, context outside the hole untouched.

    ``images`` ``[N, S, S, 3]``, ``prediction`` ``[N, O, O, 3]``, ``mask`` ``[N, S, S, 1]``
    in ``{0, 1}``; images and prediction in the same range (``[-1, 1]`` or ``[0, 1]``),
    which the result keeps. A model fills only its predicted square (the centre, or the
    square around a random hole): hole pixels outside it keep the input.
    """
    images = ops.cast(images, "float32")
    prediction = ops.cast(prediction, "float32")
    alpha = masks.blend_alpha(ops.cast(mask, "float32"), config.overlap)
    h, s = config.hole_size, config.image_size
    if config.mask_type == "center":
        o = config.hole_offset
        pad = [[0, 0], [o, s - h - o], [o, s - h - o], [0, 0]]
        prediction = ops.pad(prediction, pad)
        alpha = alpha * ops.pad(ops.ones((1, h, h, 1)), pad)
    elif not config.predicts_full_image:
        prediction, inside = masks.paste_box(prediction, masks.box_offsets(mask, h), s)
        alpha = alpha * inside
    # A select, not the blend alone, so that the context is the input itself even where
    # the prediction is not finite, and so that a quantised export can keep this one op
    # in float (export/tflite.py): pixels outside the hole stay bit-exact.
    return ops.where(alpha > 0.0, images * (1.0 - alpha) + prediction * alpha, images)


@keras.saving.register_keras_serializable(package="ctxenc_tf")
class ContextEncoder(BackendSteps, keras.Model):
    """Generator + discriminator trained jointly. ``compile(g_optimizer, d_optimizer)``,
    then ``fit``; ``train_step`` / ``test_step`` come from the backend's :data:`BackendSteps`."""

    def __init__(self, config: ModelConfig | dict, generator=None, discriminator=None, **kwargs):
        # Its own call pastes in the variables' dtype (float32 under a mixed policy): a mixed
        # policy here would cast the images to 16 bits first and round the context. The
        # networks compute in the policy they were built in.
        kwargs.setdefault("dtype", keras.config.dtype_policy().variable_dtype)
        super().__init__(**kwargs)
        self.config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.generator = generator or build_generator(self.config)
        self.discriminator = discriminator or (
            build_discriminator(self.config) if self.config.uses_discriminator else None)
        self.trackers = {n: keras.metrics.Mean(name=n) for n in METRIC_NAMES
                         if self.discriminator is not None or n not in ("d_loss", "adv_loss")}
        self.g_optimizer = self.d_optimizer = None  # set by compile
        self.built = True  # both sub-models are built functional models

    def call(self, inputs, training=False):
        """``[images, masks]`` -> completed images ``[N, S, S, 3]`` in ``[-1, 1]``."""
        images, mask = inputs
        prediction = self.generator([images, mask], training=training)
        return paste_prediction(images, prediction, mask, self.config)

    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        """Each network's optimiser, then ``keras.Model.compile``'s own arguments
        (``jit_compile``, ``steps_per_execution``, ...), as in keras.io's DCGAN example;
        :func:`ctxenc_tf.training.optimizers.compile_for_run` compiles as ``train.py`` does.

        ``d_optimizer`` is required when the model has a discriminator and refused when it
        has none. Without optimisers the model evaluates and predicts but does not train
        (``fit`` says so). Both optimisers' slot variables (Adam moments, step counter) are
        created here, in the caller's strategy scope: created lazily inside a distributed
        step they fail, and resuming loads state into them. Raises ``ValueError`` for a
        missing or extra optimiser."""
        if g_optimizer is not None and d_optimizer is None and self.discriminator is not None:
            raise ValueError("ContextEncoder.compile: the model has a discriminator; give d_optimizer too")
        if d_optimizer is not None and self.discriminator is None:
            raise ValueError("ContextEncoder.compile: the model has no discriminator (adv_weight 0); "
                             "d_optimizer must be None")
        if d_optimizer is not None and g_optimizer is None:
            raise ValueError("ContextEncoder.compile: d_optimizer given without g_optimizer")
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        for optimizer, network in ((g_optimizer, self.generator), (d_optimizer, self.discriminator)):
            if optimizer is not None and not optimizer.built:
                optimizer.build(network.trainable_variables)
        # No Keras-level optimiser (Keras would add an unused RMSprop to every saved state);
        # last, because the backend's steps may present the two optimisers to Keras.
        super().compile(optimizer=None, **kwargs)

    def make_train_function(self, force=False):
        if self.g_optimizer is None:
            raise ValueError("ContextEncoder.fit: compiled without optimisers; compile(g_optimizer, "
                             "d_optimizer) first, or ctxenc_tf.training.optimizers.compile_for_run(model, run)")
        return super().make_train_function(force)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _step_values(self, images, mask, training):
        """One forward pass of both networks on ``(images, mask)``: ``{name: [N] values}``
        for every name in :data:`METRIC_NAMES` the model tracks, the losses included. The
        discriminator sees the real target, then the prediction, once each; both losses use
        the same logits on the prediction."""
        prediction, target, region = self._generator_pass(images, mask, training)
        if self.discriminator is None:
            return self._generator_values(prediction, target, region, fake_logits=None)
        d_loss, fake_logits = self._discriminator_values(target, prediction, training)
        return {**self._generator_values(prediction, target, region, fake_logits), "d_loss": d_loss}

    def _generator_pass(self, images, mask, training):
        """The generator on ``images`` (``[N, S, S, 3]`` in ``[-1, 1]``) and ``mask``
        (``[N, S, S, 1]`` in ``{0, 1}``), and what its output is compared with:
        ``(prediction, target, region)``, the prediction and the target ``[N, O, O, 3]`` in
        ``[-1, 1]``, the region ``[N, O, O, 1]`` in ``{0, 1}`` (1 = hole), cut out by
        :func:`crop_to_output`."""
        prediction = self.generator([images, mask], training=training)
        return prediction, crop_to_output(images, mask, self.config), crop_to_output(mask, mask, self.config)

    def _generator_values(self, prediction, target, region, fake_logits):
        """The generator's losses and the image metrics of a :meth:`_generator_pass`
        ``(prediction, target, region)``: ``{name: [N] values}`` for ``rec_loss``, ``psnr``,
        ``l1``, ``g_loss`` and, given the discriminator's logits on the prediction
        (``fake_logits``; ``None`` without a discriminator), ``adv_loss``."""
        c = self.config
        if c.predicts_full_image:
            # As train_random.lua (useOverlapPred=1): the whole image is reconstructed,
            # what the network sees weighted overlap_weight, the hidden hole 1, the mean
            # taken over the image; the discriminator judges that whole output, context
            # included, so the context must be learnt too.
            weights = masks.loss_weights(region, c.overlap, c.overlap_weight, context_weight=c.overlap_weight)
            area = ops.ones_like(region)
        else:
            weights, area = masks.loss_weights(region, c.overlap, c.overlap_weight), region
        rec = losses.reconstruction_loss(prediction, target, weights, area,
                                         c.reconstruction_loss, c.mix_l1_fraction)
        out = {"rec_loss": rec,
               "psnr": metrics.masked_psnr(prediction, target, region),
               "l1": metrics.masked_l1(prediction, target, region)}
        g_loss = c.rec_weight * rec
        if fake_logits is not None:
            adv = losses.generator_adversarial_loss(fake_logits, c.adversarial_loss)
            out["adv_loss"] = adv
            g_loss = g_loss + c.adv_weight * adv
        out["g_loss"] = g_loss
        return out

    def _discriminator_values(self, target, prediction, training):
        """The discriminator on the real ``target``, then on the ``prediction`` (both
        ``[N, O, O, 3]`` in ``[-1, 1]``): ``(d_loss [N], fake_logits)``, the logits on the
        prediction for the generator's adversarial loss. In that order because in training
        batch normalisation's moving statistics move with each call, in call order."""
        real_logits = self.discriminator(target, training=training)
        fake_logits = self.discriminator(prediction, training=training)
        return losses.discriminator_loss(real_logits, fake_logits, self.config.adversarial_loss), fake_logits

    def _update_trackers(self, values):
        """Feed ``_step_values``' output to the trackers; their results as logs."""
        for name, tracker in self.trackers.items():
            tracker.update_state(values[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def get_config(self):
        return {
            **super().get_config(),
            "config": self.config.to_dict(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": (keras.saving.serialize_keras_object(self.discriminator)
                              if self.discriminator is not None else None),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        generator = keras.saving.deserialize_keras_object(config.pop("generator"))
        disc = config.pop("discriminator")
        discriminator = keras.saving.deserialize_keras_object(disc) if disc else None
        return cls(config.pop("config"), generator, discriminator, **config)
