"""python -m ctxenc_tf bench: every row printed in quick mode, FLOPs counted right, and the
synthetic bench running under JAX and PyTorch with TensorFlow unimportable."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from ctxenc_tf.benchmark import timing as bench
from ctxenc_tf.cli import bench as bench_cli
from ctxenc_tf.config import RunConfig
from ctxenc_tf.model.context_encoder import ContextEncoder
from helpers import REPO, not_installed


@pytest.mark.slow
def test_quick_bench_prints_every_row(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "ctxenc_tf", "bench", "--quick", "--variants", "float32,full_int8",
                        "--latency-batches", "1,3", "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())
    table = r.stdout[r.stdout.index("| measurement |"):]
    for row in rows:  # the Markdown table shows every row
        assert f"| {row['measurement']} | {row['setting']} | {row['result']} |" in table
    settings = {(row["measurement"], row["setting"].split(",")[0]): row for row in rows}
    assert "no GPU" in rows[0]["result"] or "GPU" in rows[0]["result"]
    assert float(settings["matmul peak", "256x256 float32"]["result"].split()[0]) > 0
    assert [row["setting"].split(",")[0] for row in rows if row["measurement"] == "FLOPs / image"] == [
        "generator forward", "discriminator forward", bench.STEP_FLOPS_SETTING]
    training = [row for row in rows if row["measurement"] == "training"]
    assert [t["setting"].split(", ")[1:3] for t in training[:3]] == [
        ["float32", "XLA on"], ["float32", "XLA off"], ["mixed_bfloat16", "XLA off"]]  # CPU: XLA off by default
    peaks = [row for row in rows if row["measurement"] == "matmul peak"]
    assert len(peaks) == 2 and len(peaks[1]["values"]["peak_flops_after"]) == 3  # after each setting
    measured = [peaks[0]["values"]["peak_flops"]] + peaks[1]["values"]["peak_flops_after"]
    for i, t in enumerate(training[:3]):  # min / median over single steps, also in the JSON
        slowest, median = (float(v) for v in t["result"].split()[0:3:2])
        assert 0 < slowest <= median
        assert t["values"]["images_per_s_median"] == pytest.approx(median, rel=0.01)
        if i < 2:  # float32 rows: a fraction of the highest float32 peak measured up to then
            assert "% of the highest float32 matmul peak so far" in t["relative"]
            assert t["values"]["peak_flops"] == max(measured[:i + 2])
        else:  # bfloat16 computes in another dtype than the peak's
            assert "peak" not in t["relative"] and "peak_fraction" not in t["values"]
    assert [t["setting"] for t in training[3:]] == ["XLA speed-up", "mixed_bfloat16 speed-up"]
    assert all(t["result"].endswith("x") and t["values"]["ratio"] > 0 for t in training[3:])
    overhead = [row for row in rows if row["measurement"] == "training overhead"]
    assert len(overhead) == 3 and all("compile" in o["result"] and "end of fit" in o["result"] for o in overhead)
    profile = [row for row in rows if row["measurement"] == "step profile"]
    step = profile[0]["values"]
    layers = {row["layer"]: row for row in step["layers"]}
    assert [f"{r['network']} {r['layer']}" for r in step["layers"]] == [
        row["setting"] for row in profile[1:len(layers) + 1]]
    for row in step["layers"]:  # every convolution found by name in the profiler's ops, forward and backward
        assert row["forward"]["ms"] > 0 and row["backward"]["ms"] > 0, row["layer"]
    # The runs charged to the layers do the bench's own FLOP count of a step (up to the
    # float sums of the JSON's GFLOP figures).
    quick = RunConfig.create(**bench_cli.QUICK, fill_value=(0.0, 0.0, 0.0))
    step_flops = bench.flops_per_image(ContextEncoder(quick.model))[2]
    charged = sum(row[d]["gflops"] for row in layers.values() for d in ("forward", "backward")) * 1e9 / 8
    assert charged == pytest.approx(step_flops, rel=1e-9)
    assert {row["setting"] for row in profile[len(layers) + 1:]} <= {"Adam update", "input pipeline",
                                                                      "convolution or matmul", "other"}
    assert 0 < step["busy_ms"] <= step["op_ms"] and step["busy_ms"] <= step["step_ms"]
    pipeline = [row for row in rows if row["measurement"] == "input pipeline"]
    assert len(pipeline) == 2 and "JPEG" in pipeline[0]["setting"] and "TFRecord" in pipeline[1]["setting"]
    latency = {row["setting"]: row["result"] for row in rows if row["measurement"] == "inference latency"}
    assert list(latency) == ["Keras", "Keras + XLA", "SavedModel", "TFLite float32",
                             "TFLite full_int8"]
    for result in latency.values():
        assert "batch 1:" in result and "batch 3:" in result and "batch 64" not in result
    faces = [row for row in rows if row["measurement"] == "faces"]
    assert [(f["values"]["megapixels"], f["values"]["faces"]) for f in faces] == [(0.995328, 1), (12.0, 1), (12.0, 3)]
    for f in faces:  # the three steps, side by side, and their sum
        steps = [f["values"][f"{k}_ms"] for k in ("detect", "align", "fill")]
        assert min(steps) > 0 and f["result"].startswith(f"{sum(steps):.0f} ms")


def test_analytic_flops_match_tf_profiler_on_convolutions(tiny):
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    from ctxenc_tf.model.networks import build_discriminator

    config = tiny.replace(fill_value=(0.0, 0.0, 0.0)).model
    discriminator = build_discriminator(config)
    spec = tf.TensorSpec([1, config.output_size, config.output_size, 3])
    graph = tf.function(lambda x: discriminator(x, training=False)).get_concrete_function(spec).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profiled = model_analyzer.profile(graph, options=options).total_float_ops
    counted = bench.conv_flops(discriminator)
    assert counted == pytest.approx(profiled, rel=0.02)  # the rest is bias/BN/activation
    # A stride-2 transposed convolution costs what the strided convolution it transposes
    # does (the backward-data pass of that convolution), not a dense conv on its output.
    import keras

    small = keras.Input((4, 4, 8))
    up = keras.Model(small, keras.layers.Conv2DTranspose(16, 4, strides=2, padding="same")(small))
    big = keras.Input((8, 8, 16))
    down = keras.Model(big, keras.layers.Conv2D(8, 4, strides=2, padding="same")(big))
    assert bench.conv_flops(up) == bench.conv_flops(down) == 2 * 4 * 4 * 8 * 4 * 4 * 16
    assert bench.train_flops_per_image(10, 1, generator_first=2, discriminator_first=1) == 33
    assert bench.train_flops_per_image(10, 0, generator_first=2, discriminator_first=0) == 28
    # A step leaves out the input gradients of each network's first convolution (4x4, stride
    # 2, RGB -> filters), written out here: once for the generator, twice for the discriminator.
    from ctxenc_tf.model.context_encoder import ContextEncoder

    model = ContextEncoder(config)
    g, d, step = bench.flops_per_image(model)
    g_first = 2 * (config.image_size // 2) ** 2 * 4 * 4 * 3 * config.gen_filters
    d_first = 2 * (config.output_size // 2) ** 2 * 4 * 4 * 3 * config.disc_filters
    assert (g, d) == (bench.conv_flops(model.generator), bench.conv_flops(model.discriminator))
    assert step == 3 * g + 7 * d - g_first - 2 * d_first


@pytest.mark.parametrize("flag, value, message", [
    ("--variants", "float32,int4", "expected one of float32, float16, dynamic_int8, full_int8, got 'int4'"),
    ("--skip", "everything", "expected one of train, profile, pipeline, inference, faces, got 'everything'"),
    ("--latency-batches", "0,8", "expected 1 to 4096, got 0"),
    ("--latency-batches", "1,x", "expected an integer, got 'x'"),
    ("--latency-batches", "", "expected at least one value, got ''"),
    ("--steps", "0", "expected 1 to 100000, got 0"),
    ("--matmul-size", "big", "expected an integer, got 'big'"),
])
def test_bad_flags_are_one_line_usage_errors(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_:
        bench_cli.main([flag, value])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m ctxenc_tf bench: error: argument {flag}: {message}"


def test_settings_default_to_bench_settings():
    """Each default lives in BenchSettings (--quick's in QUICK_SETTINGS); a flag given wins."""
    assert bench_cli.settings_from_args(bench_cli.parse_args([]), "") == bench.BenchSettings()
    quick = bench_cli.settings_from_args(bench_cli.parse_args(["--quick", "--steps", "5", "--skip", "faces"]), "d")
    assert quick == bench.BenchSettings(**{**bench_cli.QUICK_SETTINGS, "steps": 5, "skip": ("faces",),
                                            "data_dir": "d"})


# ``python -m ctxenc_tf`` with every ``import tensorflow`` (and pydantic, which the read-back
# schemas use) failing, as on a GPU machine with JAX, Keras and the packages docs/performance.md
# lists for it, and nothing else of requirements.txt.
WITHOUT_TENSORFLOW = ("import sys, runpy; sys.modules['tensorflow'] = None; sys.modules['pydantic'] = None; "
                      "runpy.run_module('ctxenc_tf', run_name='__main__')")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_synthetic_bench_needs_no_tensorflow(tmp_path, backend):
    """``KERAS_BACKEND=jax python -m ctxenc_tf bench --synthetic`` on a machine with Keras
    and JAX (or PyTorch) only: training (JAX) and generator inference in the three
    precisions, as rows and JSON."""
    if importlib.util.find_spec(backend) is None:
        not_installed(backend, "requirements-jax.txt / the torch CPU wheel (docs/testing.md)")
    out = tmp_path / "bench.json"
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, "bench", "--synthetic", "--quick", "--steps", "1",
                        "--warmup", "1", "--repeats", "1", "--latency-batches", "1,8", "--json", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert f"Keras {__import__('keras').__version__}, {backend}" in rows[0]["result"]
    training = [row for row in rows if row["measurement"] == "training"]
    inference = [row for row in rows if row["measurement"] == "generator inference"]
    assert [row["setting"] for row in inference] == ["float32", "mixed_bfloat16", "mixed_float16"]
    assert all(row["values"]["batch_1_ms"] > 0 and row["values"]["batch_8_ms"] > 0 for row in inference)
    if backend == "jax":
        assert [row["setting"].split(", ")[1] for row in training[:3]] == ["float32", "mixed_bfloat16", "mixed_float16"]
        assert all(row["values"]["images_per_s_median"] > 0 for row in training[:3])
        assert [row["setting"] for row in training[3:]] == ["mixed_bfloat16 speed-up", "mixed_float16 speed-up"]
    else:
        assert all(row["result"].startswith("not measured") for row in training)
