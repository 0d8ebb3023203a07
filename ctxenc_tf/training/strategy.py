"""``tf.distribute`` strategy and dtype policy selection from the config (under JAX, the
strategy is :mod:`ctxenc_tf.training.data_parallel`'s).

How a global batch is shared (Keras 3 + ``tf.distribute``): ``model.fit`` hands the
``tf.data`` pipeline, batched at the *global* ``batch_size``, to
``strategy.experimental_distribute_dataset``, which splits every batch evenly across the
replicas (and, with several workers, shards the input by element, prepared TFRecord
shards included: :func:`~ctxenc_tf.data.pipeline.fit_options`). Each replica's
``train_step`` sees ``batch_size / replicas`` examples; the trainer divides its
per-replica mean loss by the number of replicas and the optimiser *sums* the gradients
across replicas, so the update is the gradient of the mean over the global batch, exactly
as on one device. Batch normalisation layers built under a
multi-replica strategy synchronise their batch statistics across replicas too.
"""

import json
import os

import keras
import tensorflow as tf

from ctxenc_tf.errors import ConfigError, one_line
from ctxenc_tf.model.replicas import device_kind
from ctxenc_tf.training.data_parallel import data_parallel


def cluster_workers(tf_config: str | None = None) -> int:
    """Number of workers (``chief`` + ``worker`` tasks) that ``TF_CONFIG`` describes
    (``tf_config`` or the environment variable), 0 when it is unset.
    Raises :class:`ConfigError` when it is set but not a JSON cluster spec with a task."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw.strip():
        return 0
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
        if task["type"] not in cluster or not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise ValueError(f"task {task} is not in the cluster")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"TF_CONFIG: expected JSON like {{\"cluster\": {{\"worker\": "
                          f"[\"host1:port\", \"host2:port\"]}}, \"task\": {{\"type\": \"worker\", "
                          f"\"index\": 0}}}} ({e})") from None
    return workers


def resolve_strategy_name(name: str) -> str:
    """``auto`` -> ``multiworker`` when ``TF_CONFIG`` describes more than one worker, else
    ``mirrored`` when more than one GPU is visible, else ``default``; other names unchanged."""
    if name != "auto":
        return name
    if cluster_workers() > 1:
        return "multiworker"
    return "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"


def make_strategy(name: str):
    """Strategy for ``name`` (see :func:`resolve_strategy_name` for ``auto``):

    * ``default``: one device (the first GPU if there is one, else the CPU).
    * ``mirrored``: synchronous data parallelism over all local GPUs, or over all logical
      CPU devices when there is no GPU.
    * ``multiworker``: ``MultiWorkerMirroredStrategy`` over the machines in ``TF_CONFIG``
      (every worker runs the same command with its own ``task.index``).
    * ``tpu``: ``TPUStrategy`` on the TPU found by ``TPUClusterResolver`` (``TPU_NAME`` or a
      TPU VM).

    Raises :class:`ConfigError` naming ``--strategy`` when the hardware is not there.
    Under ``KERAS_BACKEND=jax``: :func:`~ctxenc_tf.training.data_parallel.data_parallel`.
    """
    if keras.backend.backend() == "jax":
        return data_parallel(name)
    name = resolve_strategy_name(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        if not cluster_workers():
            raise ConfigError("--strategy=multiworker: TF_CONFIG is not set; every worker needs "
                              "the cluster spec and its own task index (see README, Performance)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise ConfigError(f"--strategy=tpu: no TPU found ({one_line(e)})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"--strategy={name!r}: unknown strategy")


def mixed_precision_policy() -> str:
    """The mixed policy that pays off on this machine: ``mixed_float16`` with a GPU (tensor
    cores), ``mixed_bfloat16`` otherwise (TPUs and recent CPUs compute bfloat16 natively)."""
    return "mixed_float16" if device_kind() == "gpu" else "mixed_bfloat16"


# /proc/cpuinfo flags of the x86 units that compute bfloat16 products natively, and their names.
BFLOAT16_UNITS = {"avx512_bf16": "AVX512_BF16", "amx_bf16": "AMX"}


def cpu_bfloat16_units(cpuinfo: str = "/proc/cpuinfo") -> list:
    """The bfloat16 units this CPU announces (:data:`BFLOAT16_UNITS`' names, e.g.
    ``["AVX512_BF16", "AMX"]``), from the ``flags`` line of ``cpuinfo``; ``[]`` when it has
    none or the file is not there (not Linux)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [name for flag, name in BFLOAT16_UNITS.items() if flag in flags]


def default_precision(jit_compile: bool) -> tuple:
    """``(policy, why)``: the dtype policy a run uses when ``--precision`` is not given
    (``jit_compile``: whether its steps are XLA-compiled). ``mixed_bfloat16`` on a CPU with
    bfloat16 units under TensorFlow's own kernels (oneDNN uses the units; it trained as well
    as float32, and faster: docs/performance.md); ``float32`` everywhere else: on GPUs and
    TPUs (say ``--mixed-precision`` there), with several workers (each would judge its own
    CPU), on CPUs without the units, under XLA (JAX, or ``--jit-compile``), whose CPU
    kernels were not measured in bfloat16, and with oneDNN turned off."""
    kind = device_kind()
    if kind != "cpu":
        return "float32", f"the default on a {kind.upper()}; --mixed-precision computes in 16 bits"
    if cluster_workers() > 1:  # each worker would judge its own CPU; they must agree
        return "float32", "the default with several workers; --precision mixed_bfloat16 on all of them to opt in"
    units = cpu_bfloat16_units()
    if not units:
        return "float32", "the default on a CPU without bfloat16 units (AVX512_BF16 or AMX)"
    if jit_compile or keras.backend.backend() != "tensorflow":
        return "float32", "the default under XLA on a CPU, whose kernels were not measured in bfloat16"
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false"):
        return "float32", "the default with oneDNN off (TF_ENABLE_ONEDNN_OPTS): its kernels use the bfloat16 units"
    return "mixed_bfloat16", (f"the default on a CPU with bfloat16 units ({', '.join(units)}): it trains "
                              "as well as float32, faster; --precision float32 to opt out")


def set_precision(policy: str) -> None:
    """Set Keras' global dtype policy: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
    Variables stay float32, layers compute in the low precision, and the model outputs
    stay float32 (their last layers say so); float16 adds dynamic loss scaling."""
    keras.config.set_dtype_policy(policy)
