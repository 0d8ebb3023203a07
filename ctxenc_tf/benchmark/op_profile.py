"""Where a training step's time goes under TensorFlow, layer by layer (``bench --profile``):
TensorFlow's profiler records the ops of a few ``fit`` steps, and each convolution and
matrix product is charged to its layer, forward or backward, next to the FLOPs it does.

The FLOPs of a layer per step follow from :func:`~ctxenc_tf.benchmark.timing.train_flops_per_image`'s
count: a generator layer runs forward once and backward twice (input and weight gradients;
the first layer's input gradient is never computed), a discriminator layer forward twice
(real and fake patches) and backward five times (input and weight gradients of both in the
discriminator's own pass, and the input gradient of the fake one for the generator; the
first layer's two input gradients of the discriminator's pass are never computed). Every
one of those costs what the forward pass costs.
"""

import collections
import glob
import json
import os
import re
import tempfile
import time

import tensorflow as tf
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

from ctxenc_tf.benchmark.timing import conv_layer_flops

# Op types of the profiler's table by what they do, for the ops charged to no layer.
_KINDS = (("Adam update", ("ApplyAdam",)),
          ("input pipeline", ("Dataset", "Iterator")),
          ("convolution or matmul", ("Conv2D", "MatMul")))


def _layers(model) -> dict:
    """``{layer name: (network, forward FLOPs per image, forward runs, backward runs)}`` of
    every convolution of ``model`` (a ``ContextEncoder``), as the module docstring counts runs."""
    layers = {}
    for network, forward, backward in (("G", 1, 2), ("D", 2, 5)):
        net = model.generator if network == "G" else model.discriminator
        if net is None:
            continue
        for i, (name, flops) in enumerate(conv_layer_flops(net).items()):
            unneeded = (1 if network == "G" else 2) if i == 0 else 0  # the first layer's input gradients
            layers[name] = (network, flops, forward, backward - unneeded)
    return layers


def _op_rows(log_dir: str) -> list:
    """The profiler's framework op table of the trace in ``log_dir``: dicts with ``type``,
    ``operation`` (the op's full name) and ``total_self_time`` (microseconds)."""
    planes = glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True)
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(planes, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"TensorFlow's profiler wrote no op table ({data!r})")
    table = json.loads(data)[0]
    names = [c["id"] for c in table["cols"]]
    return [dict(zip(names, (c.get("v") for c in row["c"]))) for row in table["rows"]]


def _charge(rows: list, layers: dict) -> tuple:
    """``({(layer, "forward" | "backward"): microseconds}, {other kind: microseconds})``:
    each convolution or matrix product charged to the layer its name passes through, every
    other op (idle time left out) to a kind of :data:`_KINDS` or ``"other"`` (element-wise,
    normalisation, losses)."""
    by_layer, other = collections.Counter(), collections.Counter()
    for row in rows:
        kind, name, us = row["type"], row["operation"], row["total_self_time"]
        if kind == "IDLE":
            continue
        scopes = [re.sub(r"_\d+$", "", part) for part in name.split("/")]
        layer = next((s for s in scopes if s in layers), None)
        if layer is not None and ("Conv2D" in kind or "MatMul" in kind):
            by_layer[layer, "backward" if "gradient_tape" in scopes else "forward"] += us
            continue
        other[next((label for label, marks in _KINDS if any(m in kind for m in marks)), "other")] += us
    return by_layer, other


def profile_step(model, batches, steps: int, batch_size: int, peak: float | None) -> dict:
    """Profile ``steps`` training steps of the compiled ``model`` on ``batches`` (a dataset
    ``fit`` can read forever; the caller has run a warm-up ``fit``). ``peak``: the matmul
    FLOP/s to compare with, or None. Returns ``{"step_ms": wall time per step, "profiled_ms":
    op time per step, "layers": [...], "other": [...]}``: per convolution (``layer``,
    ``network``, ``flops_per_image``, and for ``forward`` and ``backward`` the ``ms`` per
    step, ``gflops`` per step and ``gflop_per_s``, and ``peak_fraction`` when ``peak`` is
    given), in network order, then per kind of other op (``kind``, ``ms``)."""
    layers = _layers(model)
    with tempfile.TemporaryDirectory(prefix="ctxenc-profile-") as log_dir:
        tf.profiler.experimental.start(log_dir)
        started = time.perf_counter()
        try:
            model.fit(batches, steps_per_epoch=steps, verbose=0)
        finally:
            wall = time.perf_counter() - started
            tf.profiler.experimental.stop()
        by_layer, other = _charge(_op_rows(log_dir), layers)
    per_step = 1e-3 / steps  # microseconds in all -> milliseconds per step
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
    rest = [{"kind": kind, "ms": us * per_step} for kind, us in other.most_common()]
    profiled = sum(us for us in by_layer.values()) + sum(other.values())
    return {"step_ms": 1e3 * wall / steps, "profiled_ms": profiled * per_step, "layers": out, "other": rest}
