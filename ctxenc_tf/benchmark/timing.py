"""What the benchmark measures with Keras alone, on any backend and without TensorFlow:
FLOPs counted from layer shapes, ``fit`` timed step by step, call latency, and the table
the rows go to, and the bench's settings. :mod:`ctxenc_tf.benchmark.suite` measures the
table's rows with them."""

import platform
import statistics
import time
from dataclasses import dataclass

import keras
import numpy as np

from ctxenc_tf.config import TFLITE_VARIANTS
from ctxenc_tf.model.replicas import device_kind

PARTS = ("train", "profile", "pipeline", "inference", "faces")

# The FLOPs row of a training step (see train_flops_per_image).
STEP_FLOPS_SETTING = "training step (3 G + 7 D less unneeded input gradients)"


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def conv_layer_flops(model) -> dict:
    """``{layer name: forward FLOPs per image}`` of each convolution in ``model``, in layer
    order (each counted as :func:`conv_flops` says)."""
    layers = keras.layers
    flops = {}
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            grid = layer.input.shape if isinstance(layer, layers.Conv2DTranspose) else layer.output.shape
            flops[layer.name] = int(2 * grid[1] * grid[2] * kh * kw * cin * layer.filters)
    return flops


def conv_flops(model) -> int:
    """Forward FLOPs per image of the convolutions in ``model`` (2 per multiply-add).
    ``Conv2D``: ``2 * Ho * Wo * Cout * k * k * Cin``; ``Conv2DTranspose``: ``2 * Hi * Wi *
    Cin * k * k * Cout`` (each input pixel is spread over a ``k x k`` window; counting it on
    the output grid, as TF's profiler does, would add the zeros of the dilated input).
    Normalisation, activations and the hole fill are left out (well under 1%)."""
    return sum(conv_layer_flops(model).values())


# How often one training step runs each convolution of a network, each run costing the
# convolution's forward FLOPs: (forward, backward, input gradients of the first layer that
# are never computed); see train_flops_per_image.
LAYER_RUNS = {"generator": (1, 2, 1), "discriminator": (2, 5, 2)}


def train_flops_per_image(generator_flops: int, discriminator_flops: int, *, generator_first: int,
                          discriminator_first: int) -> int:
    """FLOPs of one training step per image, backward = 2x forward where weights and inputs
    both need gradients: forward G + D(real) + D(fake); the generator's gradient goes back
    through D(fake) (input gradients only, 1x) and G (2x); the discriminator's through
    D(real) and D(fake) (2x each): ``3 G + 7 D``. Less the input gradients that no one
    needs, which TensorFlow's graph and XLA's compiled step leave out (they run what the
    requested gradients depend on): the generator's first convolution's (its input is the
    image; ``generator_first``, that convolution's forward FLOPs, which its input gradient
    would cost; no trainable layer comes before it in our networks), and the discriminator's
    first convolution's on real patches and, in the discriminator's own backward pass, on
    the fake ones (the generator's pass needs it, once): ``2 * discriminator_first``.
    ``3 G - generator_first`` without a discriminator. The counts are :data:`LAYER_RUNS`."""
    networks = {"generator": (generator_flops, generator_first),
                "discriminator": (discriminator_flops, discriminator_first)}
    return sum((forward + backward) * networks[role][0] - skipped * networks[role][1]
               for role, (forward, backward, skipped) in LAYER_RUNS.items())


def flops_per_image(model) -> tuple:
    """``(generator forward, discriminator forward, training step)`` FLOPs per image of a
    ``ContextEncoder`` (the discriminator's 0 when it has none), by :func:`conv_layer_flops` and
    :func:`train_flops_per_image`."""
    g = list(conv_layer_flops(model.generator).values())
    d = list(conv_layer_flops(model.discriminator).values()) if model.discriminator is not None else [0]
    g_flops, d_flops = sum(g), sum(d)
    return g_flops, d_flops, train_flops_per_image(g_flops, d_flops, generator_first=g[0],
                                                   discriminator_first=d[0])


def step_timer():
    """A callback recording each training call's wall time (``steps``, seconds) and when
    the last one ended (``last_end``, ``time.perf_counter``)."""
    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.steps, self.last_end = [], None

        def on_train_batch_begin(self, batch, logs=None):
            self.begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(np.asarray((logs or {}).get("g_loss", 0.0)))  # the step's results exist now
            self.last_end = time.perf_counter()
            self.steps.append(self.last_end - self.begin)

    return StepTimer()


def latency_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls, after two
    warm-up calls."""
    fn()
    fn()
    return 1000 * statistics.median(timed(fn) for _ in range(repeats))


@dataclass
class BenchSettings:
    """How long and what to measure (the bench's own flags, see ``python -m ctxenc_tf bench --help``)."""

    steps: int = 10  # timed training steps per fit
    warmup: int = 2  # untimed training steps first (tracing, XLA compilation)
    train_repeats: int = 3  # timed fits per training setting
    repeats: int = 10  # timed calls per latency figure
    pipeline_batches: int = 20  # timed input batches
    matmul_size: int | None = None  # side of the peak matmul (None: 4096 with a GPU, else 2048)
    matmul_repeats: int = 5  # chained matmuls per trial
    calibration_images: int = 16  # real images calibrating full_int8
    variants: tuple = TFLITE_VARIANTS  # TFLite variants timed
    latency_batches: tuple = (1, 64)  # batch sizes of the inference latency rows
    skip: tuple = ()  # parts left out, of PARTS
    data_dir: str = ""  # real images for the pipeline and latency rows ('' = bundled faces)

    def __post_init__(self):
        if self.matmul_size is None:
            self.matmul_size = 4096 if device_kind() == "gpu" else 2048


class Table:
    """Rows of ``(measurement, setting, result, relative)`` printed as Markdown."""

    def __init__(self, out=print):
        self.rows, self.out = [], out

    def add(self, measurement: str, setting: str, result: str, relative: str = "", values=None) -> None:
        """One row; ``values`` (numbers by name) go to the JSON only."""
        self.rows.append({"measurement": measurement, "setting": setting, "result": result,
                          "relative": relative, "values": values or {}})
        self.out(f"  {measurement} [{setting}]: {result}" + (f" ({relative})" if relative else ""))

    def markdown(self) -> str:
        lines = ["| measurement | setting | result | relative |", "|---|---|---:|---|"]
        lines += [f"| {r['measurement']} | {r['setting']} | {r['result']} | {r['relative']} |"
                  for r in self.rows]
        return "\n".join(lines)


def si(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def synthetic_batch(config, batch: int, seed: int = 0):
    """``(images, masks)`` NumPy batches for ``config`` (a ``ModelConfig``): ``[B, S, S, 3]``
    float32 uniform in ``[-1, 1]`` and ``[B, S, S, 1]`` holes of ``hole_size``, at the centre
    for the centre model, elsewhere at random positions (a random-region model computes on
    the whole image wherever its hole is: the timing does not depend on the hole's shape)."""
    rng = np.random.default_rng(seed)
    s, h = config.image_size, config.hole_size
    images = rng.uniform(-1.0, 1.0, (batch, s, s, 3)).astype(np.float32)
    corners = (np.full((batch, 2), config.hole_offset) if config.mask_type == "center"
               else rng.integers(0, s - h + 1, (batch, 2)))
    masks = np.zeros((batch, s, s, 1), np.float32)
    for mask, (top, left) in zip(masks, corners):
        mask[top:top + h, left:left + h] = 1.0
    return images, masks


def time_fits(model, batches, steps: int, warmup: int, repeats: int, batch_size: int) -> dict:
    """Time ``model.fit`` on ``batches`` (an endless dataset or iterator of training
    batches): one ``fit`` of ``warmup`` steps (tracing and XLA compilation: ``compile_s``)
    and an untimed second one (under a JAX distribution, the metrics that the next ``fit``
    resets come back unsharded, which compiles the step once more), then ``repeats`` fits
    of ``steps`` steps, each step timed on its own. Returns
    ``{"images_per_s": (min, median), "step_ms": (min, median), "compile_s",
    "end_of_fit_s" (the longest wait between the last step and ``fit`` returning)}``;
    images/s from single step times of ``batch_size`` images."""
    per_call = model.steps_per_execution
    timer = step_timer()

    def fit(count):
        started = time.perf_counter()
        model.fit(batches, steps_per_epoch=count * per_call, shuffle=False, verbose=0, callbacks=[timer])
        return time.perf_counter() - started, time.perf_counter() - timer.last_end

    compile_s, _ = fit(max(warmup, 1))
    fit(max(warmup, 1))
    step_s, end_of_fit = [], []
    for _ in range(repeats):
        end_of_fit.append(fit(steps)[1])
        step_s += [t / per_call for t in timer.steps]
    median = statistics.median(step_s)
    return {"images_per_s": (batch_size / max(step_s), batch_size / median),
            "step_ms": (1000 * min(step_s), 1000 * median), "compile_s": compile_s,
            "end_of_fit_s": max(end_of_fit)}
