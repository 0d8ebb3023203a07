"""The ops TensorFlow's profiler recorded, read from its trace files: the profiler's
public API (``tf.profiler.experimental.start``/``stop``) writes them, but reading them
takes TensorFlow's own protocol buffer (``XSpace``) and knows how its executor names its
threads and op events; ``tests/test_compat.py`` checks both."""

import glob
import os
import re

from tensorflow.tsl.profiler.protobuf import xplane_pb2

# The executor's threads run the ops (``tf_Compute/<id>``); the events on them named
# ``scope/op:Type`` are ops, never nested on one thread; the rest (``ExecutorState::Process``,
# ``ThreadpoolListener::StartRegion``) is the executor's own bookkeeping.
EXECUTOR_THREADS = "tf_Compute"
OP_EVENT = re.compile(r"([^:]+):([^:]+)")


def executor_op_events(log_dir: str) -> list:
    """Every op TensorFlow's executor ran in the profiler trace written to ``log_dir``:
    ``(start, end, name, type)``, times in picoseconds, ``name`` the op's full scope
    (``StatefulPartitionedCall/gradient_tape/generator_1/enc1_conv_1/...``). Several
    threads may run ops at once."""
    events = []
    for path in glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith(EXECUTOR_THREADS):
                    continue
                base = line.timestamp_ns * 1000
                for event in line.events:
                    op = OP_EVENT.fullmatch(names.get(event.metadata_id, ""))
                    if op:
                        start = base + event.offset_ps
                        events.append((start, start + event.duration_ps, *op.groups()))
    return events
