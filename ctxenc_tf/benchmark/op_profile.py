"""Where a training step's time goes under TensorFlow, layer by layer (the bench's
``profile`` part): TensorFlow's profiler records the ops of a few ``fit`` steps, and each
convolution and matrix product is charged to its layer, forward or backward, next to the
FLOPs it does.

The FLOPs of a layer per step follow from the bench's own count,
:data:`~ctxenc_tf.benchmark.timing.LAYER_RUNS` (see
:func:`~ctxenc_tf.benchmark.timing.train_flops_per_image`): a generator layer runs forward
once and backward twice, a discriminator layer forward twice (real and fake patches) and
backward five times, less the first layer's input gradients that are never computed. Every
one of those costs what the forward pass costs.
"""

import collections
import re
import tempfile
import time

import tensorflow as tf

from ctxenc_tf.benchmark.timing import LAYER_RUNS, conv_layer_flops
from ctxenc_tf.compat.tensorflow_profiler import executor_op_events

# Op types by what they do, for the ops charged to no layer.
_KINDS = (("Adam update", ("ApplyAdam",)),
          ("input pipeline", ("Dataset", "Iterator")),
          ("convolution or matmul", ("Conv2D", "MatMul")))


def _layers(model) -> dict:
    """``{layer name: (network, forward FLOPs per image, forward runs, backward runs)}`` of
    every convolution of ``model`` (a ``ContextEncoder``), runs counted by :data:`LAYER_RUNS`."""
    layers = {}
    for role, (forward, backward, skipped) in LAYER_RUNS.items():
        net, network = getattr(model, role), role[0].upper()  # "G" or "D"
        if net is None:
            continue
        for i, (name, flops) in enumerate(conv_layer_flops(net).items()):
            layers[name] = (network, flops, forward, backward - (skipped if i == 0 else 0))
    return layers


def _busy(events: list) -> int:
    """Picoseconds in which at least one of ``events`` ran (the union of their intervals)."""
    busy, reach = 0, None
    for start, end, _, _ in sorted(events):
        if reach is None or start > reach:
            busy, reach = busy + end - start, end
        elif end > reach:
            busy, reach = busy + end - reach, end
    return busy


def _charge(events: list, layers: dict) -> tuple:
    """``({(layer, "forward" | "backward"): ps}, {other kind: ps})`` of op durations: each
    convolution or matrix product charged to the layer its name passes through, every
    other op to a kind of :data:`_KINDS` or ``"other"`` (element-wise, normalisation,
    losses)."""
    by_layer, other = collections.Counter(), collections.Counter()
    for start, end, name, kind in events:
        scopes = [re.sub(r"_\d+$", "", part) for part in name.split("/")]
        layer = next((s for s in scopes if s in layers), None)
        if layer is not None and ("Conv2D" in kind or "MatMul" in kind):
            by_layer[layer, "backward" if "gradient_tape" in scopes else "forward"] += end - start
            continue
        other[next((label for label, marks in _KINDS if any(m in kind for m in marks)), "other")] += end - start
    return by_layer, other


def profile_step(model, batches, steps: int, batch_size: int, peak: float | None) -> dict:
    """Profile ``steps`` training steps of the compiled ``model`` on ``batches`` (a dataset
    ``fit`` can read forever; the caller has run a warm-up ``fit``). ``peak``: the matmul
    FLOP/s to compare with, or None. Returns, in milliseconds per step, ``{"step_ms": wall
    time, "busy_ms": time in which some op ran, "op_ms": the ops' durations added up,
    "layers": [...], "other": [...]}``: per convolution (``layer``, ``network``,
    ``flops_per_image``, and for ``forward`` and ``backward`` its ``ms``, ``gflops`` and
    ``gflop_per_s``, and ``peak_fraction`` when ``peak`` is given), in network order, then
    per kind of other op (``kind``, ``ms``). The wall time includes the profiler's own cost.

    ``op_ms`` above ``busy_ms`` means ops ran at once (TensorFlow's inter-op threads) and
    shared the cores, so each one's time and GFLOP/s say what it got, not what it needs
    alone: ``TF_NUM_INTEROP_THREADS=1`` runs one op at a time, each on every core."""
    layers = _layers(model)
    with tempfile.TemporaryDirectory(prefix="ctxenc-profile-") as log_dir:
        tf.profiler.experimental.start(log_dir)
        started = time.perf_counter()
        try:
            model.fit(batches, steps_per_epoch=steps, verbose=0)
        finally:
            wall = time.perf_counter() - started
            tf.profiler.experimental.stop()
        events = executor_op_events(log_dir)
    by_layer, other = _charge(events, layers)
    per_step = 1e-9 / steps  # picoseconds in all -> milliseconds per step
    out = []
    for name, (network, flops, forward, backward) in layers.items():
        row = {"layer": name, "network": network, "flops_per_image": flops}
        for direction, runs in (("forward", forward), ("backward", backward)):
            ms = by_layer[name, direction] * per_step
            gflops = runs * flops * batch_size / 1e9
            row[direction] = {"ms": ms, "gflops": gflops, "gflop_per_s": gflops / ms * 1e3 if ms else 0.0}
            if peak:
                row[direction]["peak_fraction"] = row[direction]["gflop_per_s"] * 1e9 / peak
        out.append(row)
    return {"step_ms": 1e3 * wall / steps, "busy_ms": _busy(events) * per_step,
            "op_ms": (sum(by_layer.values()) + sum(other.values())) * per_step, "layers": out,
            "other": [{"kind": kind, "ms": ps * per_step} for kind, ps in other.most_common()]}
