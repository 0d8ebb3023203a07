"""The settings of a context encoder, in two parts.

:class:`ModelConfig` defines a model: geometry, architecture, losses and the hole's fill
colour. Every ``.keras`` checkpoint and every export carries it; two checkpoints with
equal model settings are interchangeable for inference, export and resuming.

:class:`RunConfig` defines one training run of a model: where the data and outputs are,
the schedule (epochs, batch, learning rates, seed) and performance settings (strategy,
precision, XLA). It holds the :class:`ModelConfig` it trains as ``run.model``. A rerun
that resumes may change any run setting it can honour (see
:mod:`ctxenc_tf.training.resume`).

Geometry (defaults are the paper's centre-region setup):

* ``image_size`` (128): the square NHWC image the networks see, values in ``[-1, 1]``.
* ``hole_size`` (64): side of the region the generator predicts (the paper's "centre").
* ``overlap`` (4): width of the ring inside the predicted region that stays visible as
  context; the network sees a ``hole_size - 2 * overlap`` (56) core filled with the
  dataset mean and is penalised ``overlap_weight`` (10x) harder on the ring.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass, field, fields

from ctxenc_tf.errors import ConfigError
from ctxenc_tf.utils import atomic

MASK_TYPES = ("center", "random_square", "random_region")

# The TFLite variants an export can write (export/tflite.py), named here so that the
# commands and the bench can offer them without importing the export code.
TFLITE_VARIANTS = ("float32", "float16", "dynamic_int8", "full_int8")
RECONSTRUCTION_LOSSES = ("l2", "l1", "mix")
ADVERSARIAL_LOSSES = ("bce", "lsgan", "none")
GENERATORS = ("paper", "seed")
DISCRIMINATORS = ("dcgan", "patchgan")
RESIZES = ("crop", "stretch")
VAL_MASKS = ("same", "center")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
# float64 is for numerical checks (tests compare strategies in it), not for training speed.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "float64")
# --precision's default: the machine's own choice, settled when training starts
# (ctxenc_tf.training.strategy.default_precision), or a resumed run's.
AUTO_PRECISION = "auto"

PRESETS = {
    # Pathak et al. 2016, centre region (the defaults): L2 + BCE adversarial, DCGAN
    # discriminator, mean fill with a 4-px overlap ring, the generator's lr x10, batch 64.
    "paper": dict(generator="paper", discriminator="dcgan", reconstruction_loss="l2",
                  adversarial_loss="bce", mask_type="center", overlap=4, fill_value=(),
                  g_lr_multiplier=10.0, batch_size=64, resize="crop", val_mask="same"),
    # The seed PyTorch project (the PyTorch-GAN context encoder): its generator and
    # PatchGAN, L1 + least squares, random 64x64 training holes filled with white and no
    # overlap ring, centre validation holes, equal learning rates, batch 8, images
    # squashed to squares. The x10 and the ring need the paper preset.
    "seed": dict(generator="seed", discriminator="patchgan", reconstruction_loss="l1",
                 adversarial_loss="lsgan", mask_type="random_square", overlap=0,
                 fill_value=(1.0, 1.0, 1.0), g_lr_multiplier=1.0, batch_size=8,
                 resize="stretch", val_mask="center"),
}


def _opt(default, help, cli=True, factory=None):
    """A config field with its command-line help text in ``metadata``."""
    meta = {"help": help, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _need(config, ok: bool, name: str, why: str) -> None:
    """Raise :class:`ConfigError` naming the flag of ``name`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"--{name.replace('_', '-')}={getattr(config, name)!r}: {why}", name, why)


def _check_finite(config) -> None:
    """Raise :class:`ConfigError` naming the first float field that is NaN or infinite."""
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            _need(config, False, f.name, "must be a finite number")


def _check_keys(cls, d: dict, ignored=()) -> dict:
    """``d`` without the ``ignored`` keys; other keys that are not fields of ``cls`` raise
    :class:`ConfigError`."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known - set(ignored))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return {k: v for k, v in d.items() if k in known}


@dataclass
class ModelConfig:
    """What defines a model; stored in every checkpoint and export."""

    # geometry
    image_size: int = _opt(128, "side of the square input image in pixels (power of two)")
    hole_size: int = _opt(64, "side of the region the generator predicts (the centre for --mask-type center)")
    overlap: int = _opt(4, "pixels of the predicted region kept visible as context (the seen hole is hole_size - "
                        "2*overlap)")
    mask_type: str = _opt("center", f"hole shape: {', '.join(MASK_TYPES)}")
    # architecture
    bottleneck: int = _opt(4000, "channels of the encoder's 1x1 bottleneck code")
    generator: str = _opt("paper", f"generator family: {', '.join(GENERATORS)} (see model/networks.py)")
    gen_filters: int = _opt(64, "base width of the generator's convolutions")
    disc_filters: int = _opt(64, "base width of the discriminator's convolutions")
    discriminator: str = _opt("dcgan", f"discriminator: {', '.join(DISCRIMINATORS)}")
    # losses
    reconstruction_loss: str = _opt("l2", f"reconstruction loss: {', '.join(RECONSTRUCTION_LOSSES)}")
    mix_l1_fraction: float = _opt(0.5, "weight of L1 in the 'mix' reconstruction loss (rest is L2)")
    overlap_weight: float = _opt(10.0, "loss weight of the overlap ring (for random_region: of everything "
                                          "outside the hidden hole) relative to the hidden hole")
    rec_weight: float = _opt(0.999, "weight of the reconstruction loss in the generator loss")
    adv_weight: float = _opt(0.001, "weight of the adversarial loss in the generator loss (0 = no GAN)")
    adversarial_loss: str = _opt("bce", f"adversarial loss: {', '.join(ADVERSARIAL_LOSSES)}")
    fill_value: tuple = _opt((), "RGB fill of the hidden hole in [-1, 1]; empty = measured dataset mean", cli=False)
    # Provenance, not identity: the data settings of the run that trained the model
    # (data_dir, seed, val_fraction, resize, exclude, train_limit, val_limit) and a record of
    # its split (count and digest of the file names of each part), so evaluate can find its
    # held-out split, and tell when the folder's files changed since.
    trained_on: dict = _opt(None, "", cli=False, factory=dict)

    def __post_init__(self):
        self.fill_value = tuple(float(v) for v in self.fill_value)
        self.validate()

    # ---- derived geometry -------------------------------------------------
    @property
    def predicts_full_image(self) -> bool:
        """True when the generator outputs the whole image (random regions), else a
        ``hole_size`` square: the centre, or the square around a random hole."""
        return self.mask_type == "random_region"

    @property
    def takes_any_hole(self) -> bool:
        """Whether the model fills holes anywhere (trained on random ones), not only the centre."""
        return self.mask_type != "center"

    @property
    def output_size(self) -> int:
        """Side of the generator output and the discriminator input, in pixels."""
        return self.image_size if self.predicts_full_image else self.hole_size

    @property
    def hole_offset(self) -> int:
        """Top/left offset of the centre predicted region inside the image."""
        return (self.image_size - self.hole_size) // 2

    @property
    def uses_discriminator(self) -> bool:
        """Whether an adversarial term (and thus a discriminator) takes part in training."""
        return self.adversarial_loss != "none" and self.adv_weight > 0

    @property
    def mixes_losses(self) -> bool:
        """Whether the generator loss mixes an adversarial and a reconstruction term (the
        original code then raises the generator's learning rate)."""
        return self.uses_discriminator and self.rec_weight > 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value is out of range."""
        need = functools.partial(_need, self)
        _check_finite(self)
        need(self.mask_type in MASK_TYPES, "mask_type", f"must be one of {MASK_TYPES}")
        need(self.reconstruction_loss in RECONSTRUCTION_LOSSES, "reconstruction_loss",
             f"must be one of {RECONSTRUCTION_LOSSES}")
        need(self.adversarial_loss in ADVERSARIAL_LOSSES, "adversarial_loss",
             f"must be one of {ADVERSARIAL_LOSSES}")
        need(self.generator in GENERATORS, "generator", f"must be one of {GENERATORS}")
        need(self.discriminator in DISCRIMINATORS, "discriminator", f"must be one of {DISCRIMINATORS}")
        need(_is_power_of_two(self.image_size) and 16 <= self.image_size <= 512, "image_size",
             "must be a power of two from 16 to 512 (the encoder halves it down to 4x4)")
        need(_is_power_of_two(self.hole_size) and 8 <= self.hole_size < self.image_size, "hole_size",
             "must be a power of two >= 8 and smaller than --image-size")
        need(0 <= 2 * self.overlap < self.hole_size, "overlap", "must be >= 0 and < hole_size / 2")
        # Upper bounds far above any useful model, below sizes that exhaust memory.
        need(0 < self.bottleneck <= 16384, "bottleneck", "must be from 1 to 16384")
        need(0 < self.gen_filters <= 256, "gen_filters", "must be from 1 to 256")
        need(0 < self.disc_filters <= 256, "disc_filters", "must be from 1 to 256")
        need(self.overlap_weight >= 0, "overlap_weight", "must be >= 0")
        need(0 <= self.mix_l1_fraction <= 1, "mix_l1_fraction", "must be in [0, 1]")
        need(self.rec_weight >= 0 and self.adv_weight >= 0 and self.rec_weight + self.adv_weight > 0,
             "rec_weight", "rec_weight and adv_weight must be >= 0 and not both 0")
        need(len(self.fill_value) in (0, 3) and all(-1 <= v <= 1 for v in self.fill_value),
             "fill_value", "must be empty (measure it) or three values in [-1, 1]")

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict of every field."""
        d = dataclasses.asdict(self)
        d["fill_value"] = list(self.fill_value)
        return d

    def identity(self) -> dict:
        """The settings that make two models interchangeable: :meth:`to_dict` without the
        provenance."""
        d = self.to_dict()
        del d["trained_on"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`. Files of version 0.1 stored run settings beside the
        model's; those keys are ignored. Other unknown keys raise :class:`ConfigError`."""
        return cls(**_check_keys(cls, d, ignored=LEGACY_MODEL_KEYS))

    def replace(self, **changes) -> ModelConfig:
        """Copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def save_json(self, path: str) -> None:
        """Write the settings as JSON to ``path`` atomically (temp file + rename)."""
        _save_json(self.to_dict(), path)


@dataclass
class RunConfig:
    """One training run of ``model``: data, schedule, outputs and performance."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"cli": False})
    # data
    data_dir: str = _opt("", "CelebA root (img_align_celeba/ + list_eval_partition.txt) or any image folder; empty = "
                         "bundled demo faces")
    train_limit: int = _opt(0, "use at most this many training images (0 = all)")
    val_limit: int = _opt(0, "use at most this many validation images (0 = all)")
    val_fraction: float = _opt(0.1, "fraction held out for validation when --data-dir is a plain folder")
    exclude: str = _opt("", "comma-separated file-name patterns left out of the data, e.g. 'video-carphone*' to hold "
                        "out a person")
    cache: str = _opt("", "cache decoded images: '' (off), 'memory', or a file path prefix")
    resize: str = _opt("crop", "how images become squares: 'crop' (central square, aspect kept) or 'stretch' (whole "
                       "image squashed, as the seed project)")
    val_mask: str = _opt("same", "validation holes: 'same' type as training, or 'center' (the seed project's)")
    # schedule
    epochs: int = _opt(25, "number of epochs")
    batch_size: int = _opt(64, "global batch size (split across replicas)")
    seed: int = _opt(0, "seed for weights, shuffling, flips and masks")
    learning_rate: float = _opt(2e-4, "Adam learning rate of the discriminator (and of the generator before the "
                                "multiplier)")
    g_lr_multiplier: float = _opt(10.0, "generator learning rate multiplier when adversarial and reconstruction losses "
                                  "are mixed")
    beta_1: float = _opt(0.5, "Adam beta_1 of both optimisers")
    # output
    output_dir: str = _opt("runs/default", "where checkpoints, logs and sample grids are written")
    backup_steps: int = _opt(0, "also save the resume state every N training steps inside an epoch (0 = after every "
                             "epoch only)")
    sample_every: int = _opt(10, "keep the sample grid of every N-th epoch (and of the first and last) in samples/")
    checkpoint_optimizer: bool = _opt(False, "also store both optimisers' state in best.keras and final.keras (the "
                                      "resume state always has it)")
    # performance
    strategy: str = _opt("auto", f"tf.distribute strategy: {', '.join(STRATEGIES)}")
    precision: str = _opt(AUTO_PRECISION, f"dtype policy: {', '.join(PRECISIONS)}, or {AUTO_PRECISION}: "
                          "mixed_bfloat16 on a CPU with bfloat16 units (AVX512_BF16 or AMX) under TensorFlow's "
                          "kernels, else float32; a resumed run keeps its own")
    jit_compile: bool | None = _opt(None, "compile train/test steps with XLA; default: on with a GPU or TPU, off on "
                                    "CPUs, where TensorFlow's oneDNN kernels measured faster (python -m ctxenc_tf "
                                    "bench compares both)")
    steps_per_execution: int = _opt(1, "training steps run per tf.function call")

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        self.validate()

    @classmethod
    def create(cls, **settings) -> RunConfig:
        """A run from flat settings: model fields go to ``model``, the rest to the run."""
        model = {k: settings.pop(k) for k in list(settings) if k in MODEL_FIELDS}
        return cls(model=ModelConfig(**model), **_check_keys(cls, settings))

    @property
    def g_learning_rate(self) -> float:
        """Generator learning rate: ``learning_rate * g_lr_multiplier`` when the model mixes
        adversarial and reconstruction terms (as in the original code), else ``learning_rate``."""
        return self.learning_rate * (self.g_lr_multiplier if self.model.mixes_losses else 1.0)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value is out of range."""
        need = functools.partial(_need, self)
        _check_finite(self)
        need(self.strategy in STRATEGIES, "strategy", f"must be one of {STRATEGIES}")
        need(0 <= self.seed < 2 ** 31, "seed", "must be from 0 to 2**31 - 1")
        need(self.resize in RESIZES, "resize", f"must be one of {RESIZES}")
        need(self.val_mask in VAL_MASKS, "val_mask", f"must be one of {VAL_MASKS}")
        need(self.precision in PRECISIONS + (AUTO_PRECISION,), "precision",
             f"must be one of {PRECISIONS + (AUTO_PRECISION,)}")
        need(self.learning_rate > 0, "learning_rate", "must be positive")
        need(self.g_lr_multiplier > 0, "g_lr_multiplier", "must be positive")
        need(0 <= self.beta_1 < 1, "beta_1", "must be in [0, 1)")
        need(0 < self.batch_size <= 65536, "batch_size", "must be from 1 to 65536")
        need(self.epochs > 0, "epochs", "must be positive")
        need(self.train_limit >= 0, "train_limit", "must be >= 0 (0 = no limit)")
        need(self.val_limit >= 0, "val_limit", "must be >= 0 (0 = no limit)")
        need(0 < self.val_fraction < 1, "val_fraction", "must be in (0, 1)")
        need(self.steps_per_execution > 0, "steps_per_execution", "must be positive")
        need(self.backup_steps >= 0, "backup_steps", "must be >= 0 (0 = after every epoch only)")
        need(self.sample_every > 0, "sample_every", "must be positive")
        need(is_utf8(self.output_dir), "output_dir", "TensorFlow needs a UTF-8 path; rename it")
        need(is_utf8(self.cache), "cache", "TensorFlow needs a UTF-8 path; rename it")

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict: the run's fields and ``model``'s as a nested dict."""
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"},
                "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        return cls(**_check_keys(cls, d))

    def replace(self, **changes) -> RunConfig:
        """Copy with some fields changed (validated); model fields go to ``model``."""
        model = {k: changes.pop(k) for k in list(changes) if k in MODEL_FIELDS}
        if model:
            changes["model"] = self.model.replace(**model)
        return dataclasses.replace(self, **changes)

    def save_json(self, path: str) -> None:
        """Write the settings as JSON to ``path`` atomically (temp file + rename)."""
        _save_json(self.to_dict(), path)


def training_data(model: ModelConfig, **changes) -> RunConfig:
    """A :class:`RunConfig` with the data settings (``data_dir``, ``seed``, ``val_fraction``,
    ``resize``, ``exclude``, ``train_limit``, ``val_limit``) of the run that trained
    ``model``, as ``model.trained_on`` records them (defaults when
    it does not), then ``changes``: to find that run's split again."""
    recorded = {k: v for k, v in model.trained_on.items()
                if k in ("data_dir", "seed", "val_fraction", "resize", "exclude", "train_limit", "val_limit")}
    return RunConfig(model=model, **{**recorded, **changes})


MODEL_FIELDS = tuple(f.name for f in fields(ModelConfig))
RUN_FIELDS = tuple(f.name for f in fields(RunConfig) if f.name != "model")

# Keys that model configs of version 0.1 carried beside the model's own; ignored when read.
LEGACY_MODEL_KEYS = RUN_FIELDS + ("notes",)


def cli_fields():
    """The dataclass fields that are command-line flags, model settings first."""
    return [f for cls in (ModelConfig, RunConfig) for f in fields(cls) if f.metadata.get("cli")]


def _save_json(d: dict, path: str) -> None:
    atomic.write_bytes(path, json.dumps(d, indent=2, sort_keys=True).encode())


def is_utf8(path: str) -> bool:
    """Whether ``path`` is valid UTF-8 once encoded for the file system: TensorFlow's file
    functions (summaries, SavedModels, caches) take no other names."""
    try:
        os.fsencode(path).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _is_power_of_two(n) -> bool:
    return isinstance(n, int) and n > 0 and 2 ** int(math.log2(n)) == n
