"""serving/: the client builds REST and gRPC requests from the exported SavedModel's
signatures, parses what the same signatures return, and fails with one line on bad input.

Without Docker, two stand-ins for TF Serving run here on 127.0.0.1 (a REST server writing
JSON the way TF Serving's json_tensor.cc does, and a gRPC PredictionService), both
executing the exported SavedModel in-process. With ``tensorflow_model_server`` on PATH
the real server is tested end to end.
"""

import base64
import functools
import glob
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, text_format, wrappers_pb2
from PIL import Image
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from ctxenc_tf.cli import app
from ctxenc_tf.cli import serve_client as serve_client_cli
from ctxenc_tf.cli.common import run_main
from ctxenc_tf.data import pipeline
from ctxenc_tf.export import warmup
from ctxenc_tf.export.saved_model import export_saved_model
from ctxenc_tf.inference import serving_client
from ctxenc_tf.inference.runner import load_runner
from ctxenc_tf.model.context_encoder import ContextEncoder
from helpers import FACES, REPO, free_port, run_model, tiny_model

MODEL = "ctxenc"
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"
FACE_FILES = sorted(glob.glob(os.path.join(FACES, "*.jpg")))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny exported model: ``(keras_model, version_dir, signature_defs, loaded)``."""
    model = ContextEncoder(tiny_model(fill_value=(0.1, 0.0, -0.1), seed=3))
    path = export_saved_model(model, str(tmp_path_factory.mktemp("export")))
    saved = saved_model_pb2.SavedModel.FromString(open(os.path.join(path, "saved_model.pb"), "rb").read())
    signature_defs = dict(saved.meta_graphs[0].signature_def)
    return model, path, signature_defs, tf.saved_model.load(path)


def metadata_json(signature_defs) -> dict:
    """GET /v1/models/ctxenc/metadata as TF Serving writes it (GetModelMetadataResponse
    JSON, the SignatureDefMap packed in an Any)."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = MODEL
    response.model_spec.version.value = 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature)
    response.metadata["signature_def"].Pack(signature_map)
    return json_format.MessageToDict(response, preserving_proto_field_name=True)


def run_signature(loaded, name, inputs: dict) -> dict:
    signature = loaded.signatures[name]
    specs = signature.structured_input_signature[1]
    outputs = signature(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def tf_serving_rest_json(outputs: dict) -> bytes:
    """Columnar REST predict response the way TF Serving writes it: one output unnamed;
    DT_STRING values raw inside JSON strings (control characters escaped) unless the
    output name ends in ``_bytes`` (then ``{"b64": ...}``, as our exports name them)."""

    def jsonable(name, value):
        if value.dtype == object:
            return [{"b64": base64.b64encode(v).decode()} if name.endswith("_bytes")
                    else v.decode("latin-1") for v in value]
        return value.tolist()

    tensors = {k: jsonable(k, v) for k, v in outputs.items()}
    body = {"outputs": next(iter(tensors.values())) if len(tensors) == 1 else tensors}
    return json.dumps(body, ensure_ascii=False).encode("latin-1")


def rest_inputs(body: dict, signature_def) -> dict:
    """Decode a REST predict body the way TF Serving does, checked against the signature."""
    inputs = {}
    for name, value in body["inputs"].items():
        info = signature_def.inputs[name]  # KeyError = a name the model does not have
        if info.dtype == types_pb2.DT_STRING:
            inputs[name] = np.array([base64.b64decode(v["b64"]) for v in value], dtype=object)
        else:
            inputs[name] = np.asarray(value)
    return inputs


def face_bytes(i=0):
    return open(FACE_FILES[i], "rb").read()


def keras_completed_png_pixels(model, photo):
    """What Keras makes of a photo: uint8 [S, S, 3] completed image."""
    image = (pipeline.decode_image(photo, model.config.image_size).numpy()[None] + 1.0) / 2.0
    return np.round(run_model(model, image)["completed"][0] * 255.0)


def assert_png_matches(png, expected):
    got = np.asarray(Image.open(io.BytesIO(png))).astype(int)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1


# ---- requests built from the exported signatures -------------------------------------

@pytest.mark.parametrize("signature_name", ["serving_bytes", "serving_uint8", "serving_default"])
def test_rest_body_follows_exported_signature(served, signature_name):
    model, _, signature_defs, loaded = served
    signatures = serving_client.signature_map_from_json(metadata_json(signature_defs))
    assert signatures[signature_name] == signature_defs[signature_name]
    signature = serving_client.pick_signature(signatures, signature_name, MODEL)
    name, dtype, size = serving_client.image_input(signature)
    assert (name, dtype) == next((k, v.dtype) for k, v in signature_defs[signature_name].inputs.items())

    photos = [face_bytes(0), face_bytes(1)]
    body = serving_client.rest_predict_body(signature_name, {name: serving_client.encode_inputs(photos, dtype, size)})
    body = json.loads(body)  # what goes over the wire
    assert body["signature_name"] == signature_name and set(body["inputs"]) == {name}
    inputs = rest_inputs(body, signature_defs[signature_name])
    if dtype == types_pb2.DT_STRING:
        assert list(inputs[name]) == photos  # the original bytes, b64 in JSON
    else:
        s = model.config.image_size
        assert inputs[name].shape == (2, s, s, 3)
        assert inputs[name].min() >= 0 and inputs[name].max() <= (255 if dtype == types_pb2.DT_UINT8 else 1)
    # the body runs on the exported signature, and the client reads the answer back
    outputs = run_signature(loaded, signature_name, inputs)
    response = serving_client.decode_rest_json(tf_serving_rest_json(outputs))
    pngs = serving_client.completed_pngs(signature_name, signature, serving_client.rest_outputs(response, signature),
                                         len(photos), model.config.image_size, json_numbers=True)
    for photo, png in zip(photos, pngs):
        assert_png_matches(png, keras_completed_png_pixels(model, photo))


def test_grpc_request_follows_exported_signature(served):
    model, _, signature_defs, loaded = served
    signature = signature_defs["serving_bytes"]
    name, dtype, size = serving_client.image_input(signature)
    photos = [face_bytes(2)]
    request = serving_client.grpc_predict_request(MODEL, "serving_bytes", name,
                                                  serving_client.encode_inputs(photos, dtype, size), dtype, 1)
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert (request.model_spec.name, request.model_spec.signature_name) == (MODEL, "serving_bytes")
    assert request.model_spec.version.value == 1
    assert set(request.inputs) == set(signature.inputs)
    for key, proto in request.inputs.items():
        assert proto.dtype == signature.inputs[key].dtype
        dims = [d.size for d in signature.inputs[key].tensor_shape.dim]
        assert len(proto.tensor_shape.dim) == len(dims)
        assert all(want in (-1, d.size) for want, d in zip(dims, proto.tensor_shape.dim))
    assert list(tf.make_ndarray(request.inputs[name])) == photos

    outputs = run_signature(loaded, "serving_bytes", {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    response = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    png = serving_client.completed_pngs("serving_bytes", signature, serving_client.grpc_outputs(response), 1,
                                        model.config.image_size)[0]
    assert_png_matches(png, keras_completed_png_pixels(model, photos[0]))


def test_inputs_the_client_cannot_build_are_refused(served):
    _, _, signature_defs, _ = served
    with pytest.raises(serving_client.ServingError, match="one image input"):
        serving_client.image_input(signature_defs["inpaint"])
    with pytest.raises(serving_client.ServingError, match="no signature 'nope'.*serving_bytes"):
        serving_client.pick_signature(signature_defs, "nope", MODEL)


# ---- stand-in servers on 127.0.0.1 -----------------------------------------------------

class FakeRestServing(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST routes for model ``ctxenc``, run by the exported SavedModel."""

    served = None  # (signature_defs, loaded), set per server
    slots = None  # a semaphore: when none is free, answer 503 as an over-capacity TF Serving does
    state = "AVAILABLE"  # what the model status route reports

    def log_message(self, *args):
        pass

    def _reply(self, code, body: bytes):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _model(self):
        path = self.path.split(":")[0]
        parts = path.strip("/").split("/")
        if parts[:2] != ["v1", "models"] or parts[2] != MODEL:
            self._reply(404, json.dumps({"error": f"Servable not found for request: Latest({parts[2]})"}).encode())
            return None
        return parts

    def do_GET(self):
        parts = self._model()
        if parts is None:
            return
        if parts[-1] == "metadata":
            self._reply(200, json.dumps(metadata_json(self.served[0])).encode())
        else:
            self._reply(200, json.dumps({"model_version_status": [
                {"version": "1", "state": self.state, "status": {"error_code": "OK"}}]}).encode())

    def do_POST(self):
        if self._model() is None:
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.slots is not None and not self.slots.acquire(blocking=False):
            self._reply(503, json.dumps({"error": QUEUE_FULL}).encode())
            return
        try:
            signature_defs, loaded = self.served
            name = body.get("signature_name", "serving_default")
            outputs = run_signature(loaded, name, rest_inputs(body, signature_defs[name]))
        finally:
            if self.slots is not None:
                self.slots.release()
        self._reply(200, tf_serving_rest_json(outputs))


class FakeGrpcServing(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's PredictionService (metadata + predict) for model ``ctxenc``."""

    def __init__(self, signature_defs, loaded, slots=None):
        self.signature_defs, self.loaded, self.slots = signature_defs, loaded, slots

    def _check(self, model_spec, context):
        if model_spec.name != MODEL:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({model_spec.name})")

    def GetModelMetadata(self, request, context):
        self._check(request.model_spec, context)
        return json_format.ParseDict(metadata_json(self.signature_defs),
                                     get_model_metadata_pb2.GetModelMetadataResponse())

    def Predict(self, request, context):
        self._check(request.model_spec, context)
        if self.slots is not None and not self.slots.acquire(blocking=False):
            context.abort(grpc.StatusCode.UNAVAILABLE, QUEUE_FULL)
        try:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            outputs = run_signature(self.loaded, request.model_spec.signature_name, inputs)
        finally:
            if self.slots is not None:
                self.slots.release()
        response = predict_pb2.PredictResponse()
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


def rest_server(served, slots=None, state="AVAILABLE"):
    """A REST stand-in on 127.0.0.1 serving ``served``'s SavedModel (``slots``, ``state``: see FakeRestServing)."""
    _, _, signature_defs, loaded = served
    handler = type("Handler", (FakeRestServing,), {"served": (signature_defs, loaded), "slots": slots,
                                                   "state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers(served):
    """``{"rest": port, "grpc": port}`` of the stand-ins, listening on 127.0.0.1."""
    _, _, signature_defs, loaded = served
    rest = rest_server(served)
    rpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(FakeGrpcServing(signature_defs, loaded), rpc)
    grpc_port = rpc.add_insecure_port("127.0.0.1:0")
    rpc.start()
    yield {"rest": rest.server_address[1], "grpc": grpc_port}
    rest.shutdown()
    rpc.stop(0)


def client(*args):
    return run_main(serve_client_cli.main, [*args, "--host", "127.0.0.1", "--timeout", "20"])


def one_error_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


@pytest.mark.parametrize("protocol,signature", [("rest", "serving_bytes"), ("grpc", "serving_bytes"),
                                                ("rest", "serving_uint8"), ("grpc", "serving_default")])
def test_client_saves_what_keras_computes(served, servers, tmp_path, protocol, signature, capsys):
    model = served[0]
    photos = FACE_FILES[:2]
    out = tmp_path / "completed"
    assert client(*photos, "--out", str(out), "--protocol", protocol, "--port", str(servers[protocol]),
                  "--signature", signature) == 0
    assert "2 image(s) completed" in capsys.readouterr().out
    for photo in photos:
        name = os.path.splitext(os.path.basename(photo))[0] + "_completed.png"
        assert_png_matches((out / name).read_bytes(), keras_completed_png_pixels(model, open(photo, "rb").read()))


def test_many_photos_go_in_requests_the_batcher_accepts(served, servers, monkeypatch):
    monkeypatch.setattr(serving_client, "REQUEST_PHOTOS", 2)
    sizes = []
    with serving_client.connect("grpc", "127.0.0.1", servers["grpc"], MODEL, "serving_bytes") as model:
        send = model.send
        monkeypatch.setattr(model, "send", lambda request: sizes.append(request[0]) or send(request))
        photos = [face_bytes(i) for i in range(5)]
        pngs = model.complete(photos)
    assert sizes == [2, 2, 1]
    for photo, png in zip(photos, pngs):
        assert_png_matches(png, keras_completed_png_pixels(served[0], photo))


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_client_wrong_model_name(servers, tmp_path, protocol, capsys):
    with pytest.raises(SystemExit) as exit_info:
        client(FACE_FILES[0], "--out", str(tmp_path / "x.png"), "--protocol", protocol,
               "--port", str(servers[protocol]), "--model", "nosuchmodel")
    assert exit_info.value.code == 2
    assert "not found" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x.png").exists()


def test_client_server_down_and_bad_files(tmp_path, capsys):
    port = str(free_port())
    for protocol in ("rest", "grpc"):
        with pytest.raises(SystemExit) as exit_info:
            client(FACE_FILES[0], "--out", str(tmp_path / "x.png"), "--protocol", protocol, "--port", port)
        assert exit_info.value.code == 2
        assert "cannot reach TF Serving" in one_error_line(capsys.readouterr().err)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a photo")
    for path, reason in ((str(tmp_path / "missing.jpg"), "No such file"), (str(not_image), "not a JPEG")):
        with pytest.raises(SystemExit) as exit_info:
            client(path, "--port", port)
        assert exit_info.value.code == 2
        line = one_error_line(capsys.readouterr().err)
        assert path in line and reason in line


# ---- the load test ---------------------------------------------------------------------

def load_report(tmp_path, port, *args):
    out = tmp_path / "load.json"
    assert client(*FACE_FILES[:2], "--port", str(port), "--out", str(out), *args) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_load_test_reports_throughput_and_latency(servers, tmp_path, protocol, capsys):
    report = load_report(tmp_path, servers[protocol], "--protocol", protocol, "--load", "60",
                         "--clients", "3", "--max-requests", "12")
    assert (report["requests"], report["ok"], report["failed"], report["unfinished"]) == (12, 12, 0, 0)
    assert report["errors"] == {} and report["clients"] == 3 and report["protocol"] == protocol
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert report["first_request_ms"] > 0
    assert report["requests_per_s"] == pytest.approx(12 / report["elapsed_s"])
    assert report["images_per_s"] == report["requests_per_s"]  # one photo per request
    assert "12 of 12 requests succeeded" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_load_beyond_capacity_is_reported_not_hung(served, tmp_path, protocol):
    # Stand-ins that take one request at a time and refuse the rest as a TF Serving whose
    # batch queue is full does (REST 503, gRPC UNAVAILABLE, its words); six clients overflow them.
    if protocol == "rest":
        server = rest_server(served, slots=threading.Semaphore(1))
        port, stop = server.server_address[1], server.shutdown
    else:
        rpc = grpc.server(futures.ThreadPoolExecutor(max_workers=6))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            FakeGrpcServing(*served[2:], slots=threading.Semaphore(1)), rpc)
        port = rpc.add_insecure_port("127.0.0.1:0")
        rpc.start()
        stop = functools.partial(rpc.stop, 0)
    try:
        started = time.monotonic()
        report = load_report(tmp_path, port, "--protocol", protocol, "--load", "1.5", "--clients", "6",
                             "--max-requests", "400")
        elapsed = time.monotonic() - started
    finally:
        stop()
    assert report["ok"] > 0 and report["failed"] > 0 and report["unfinished"] == 0
    assert report["ok"] + report["failed"] == report["requests"]
    # over capacity, not "down": the server answered
    assert all("server over capacity" in reason and QUEUE_FULL in reason for reason in report["errors"])
    assert elapsed < 1.5 + 20  # the time asked for plus at most one request's --timeout (20 s)


@pytest.mark.slow
def test_client_cli_process_reports_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ctxenc_tf", "serve-client", FACE_FILES[0],
                             "--host", "127.0.0.1", "--port", str(free_port()), "--out", str(tmp_path / "x.png")],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2
    assert "cannot reach TF Serving" in one_error_line(result.stderr)


# ---- the serving/ files ------------------------------------------------------------------

def serving_config_classes():
    """``(BatchingParameters, MonitoringConfig)`` message classes as TF Serving declares them
    (session_bundle_config.proto fields 1-7, monitoring_config.proto). The pip package
    tensorflow-serving-api ships neither, so they are declared here, to parse serving/'s
    files as strictly as the server does: a misspelt field fails the parse."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="serving_configs.proto", package="tensorflow.serving",
                                               syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    batching = proto.message_type.add(name="BatchingParameters")
    for number, (name, wrapper) in enumerate((("max_batch_size", "Int64Value"), ("batch_timeout_micros", "Int64Value"),
                                              ("max_enqueued_batches", "Int64Value"),
                                              ("num_batch_threads", "Int64Value"),
                                              ("thread_pool_name", "StringValue")), start=1):
        batching.field.add(name=name, number=number, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                           type_name=f".google.protobuf.{wrapper}")
    batching.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    proto.message_type.add(name="MonitoringConfig").field.add(
        name="prometheus_config", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
        type_name=".tensorflow.serving.PrometheusConfig")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
                 for name in ("BatchingParameters", "MonitoringConfig"))


def serving_file(name):
    return open(os.path.join(REPO, "serving", name)).read()


def test_serving_files_agree_with_the_export():
    config = text_format.Parse(serving_file("models.config"), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == MODEL and model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") is not None
    dockerfile = serving_file("Dockerfile")
    assert "FROM tensorflow/serving:" in dockerfile
    assert f"/saved_model {model.base_path}" in dockerfile  # the export's version dirs land there
    compose = serving_file("docker-compose.yml")
    assert '"8500:8500"' in compose and '"8501:8501"' in compose


def test_batching_and_monitoring_are_configured_and_enabled():
    batching_class, monitoring_class = serving_config_classes()
    batching = text_format.Parse(serving_file("batching_parameters.txt"), batching_class())
    sizes = list(batching.allowed_batch_sizes)
    # TF Serving's rules: increasing sizes, the last one max_batch_size; each one is warmed up
    assert sizes == sorted(set(sizes)) and sizes[-1] == batching.max_batch_size.value
    assert tuple(sizes) == warmup.BATCH_SIZES
    assert serving_client.REQUEST_PHOTOS <= batching.max_batch_size.value  # the client's requests fit
    assert batching.batch_timeout_micros.value > 0 and batching.num_batch_threads.value >= 1
    assert batching.max_enqueued_batches.value >= 1  # a bounded queue: beyond it requests are refused
    monitoring = text_format.Parse(serving_file("monitoring.config"), monitoring_class())
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path.startswith("/")
    dockerfile = serving_file("Dockerfile")
    for flag in ("--enable_batching=true", "--batching_parameters_file=/models/batching_parameters.txt",
                 "--enable_model_warmup=true", "--monitoring_config_file=/models/monitoring.config"):
        assert f'"{flag}"' in dockerfile
    copied = next(line for line in dockerfile.splitlines() if line.startswith("COPY serving/"))
    ignore = serving_file("Dockerfile.dockerignore")
    for name in ("models.config", "batching_parameters.txt", "monitoring.config"):
        assert f"serving/{name}" in copied and f"!serving/{name}" in ignore


def test_compose_health_check_asks_the_model_status(served):
    line = next(line for line in serving_file("docker-compose.yml").splitlines() if line.strip().startswith("test:"))
    command = json.loads(line.split("test:", 1)[1])  # a YAML flow sequence of double-quoted strings is JSON
    assert command[:3] == ["CMD", "bash", "-c"] and f"GET /v1/models/{MODEL} " in command[3]

    def healthy(port):
        script = command[3].replace("/dev/tcp/127.0.0.1/8501", f"/dev/tcp/127.0.0.1/{port}")
        assert script != command[3]
        return subprocess.run(["bash", "-c", script], capture_output=True, timeout=30, check=False).returncode == 0

    for state, expected in (("AVAILABLE", True), ("LOADING", False)):
        server = rest_server(served, state=state)
        try:
            assert healthy(server.server_address[1]) is expected, state
        finally:
            server.shutdown()
    assert not healthy(free_port())  # no server


# ---- the real TF Serving ------------------------------------------------------------------

def metric_total(metrics: str, fragment: str) -> float:
    """The sum of the Prometheus samples whose metric name contains ``fragment``."""
    samples = (line.rsplit(None, 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    return sum(float(value) for name, value in samples if fragment in name.split("{")[0])


def test_tensorflow_model_server_end_to_end(served, tmp_path):
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
        pytest.skip("tensorflow_model_server is not on PATH; to test against the real server, copy it "
                    "out of the image (docker create --name tfs tensorflow/serving:2.20.0 && docker cp "
                    "tfs:/usr/bin/tensorflow_model_server ~/.local/bin/) or install the apt package "
                    "tensorflow-model-server (storage.googleapis.com/tensorflow-serving-apt)")
    model, path = served[0], served[1]
    grpc_port, rest_port = free_port(), free_port()
    serving = os.path.join(REPO, "serving")
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:  # the flags of serving/Dockerfile, the files of serving/
        server = subprocess.Popen([binary, f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                                   f"--model_name={MODEL}", f"--model_base_path={os.path.dirname(path)}",
                                   "--enable_batching=true", "--enable_model_warmup=true",
                                   f"--batching_parameters_file={serving}/batching_parameters.txt",
                                   f"--monitoring_config_file={serving}/monitoring.config"],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}", timeout=5) as r:
                    if json.load(r)["model_version_status"][0]["state"] == "AVAILABLE":
                        break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, "tensorflow_model_server did not start"
            time.sleep(0.5)
        # the warm-up file was replayed, every record of it, before the version became available
        records = sum(1 for _ in tf.data.TFRecordDataset(os.path.join(path, "assets.extra", warmup.WARMUP_FILE)))
        assert f"Number of warmup records read: {records}" in log_path.read_text()

        photo = open(FACE_FILES[0], "rb").read()
        expected = keras_completed_png_pixels(model, photo)
        for protocol, port in (("rest", rest_port), ("grpc", grpc_port)):
            out = tmp_path / f"{protocol}.png"
            assert client(FACE_FILES[0], "--out", str(out), "--protocol", protocol, "--port", str(port)) == 0
            assert_png_matches(out.read_bytes(), expected)

        # no slow first request of a new signature: warm-up built serving_uint8's graph too.
        # A cold signature's first request builds its graph (seconds); the bound is loose
        # enough for a busy machine and still far below that.
        (tmp_path / "uint8").mkdir()
        report = load_report(tmp_path / "uint8", rest_port, "--signature", "serving_uint8", "--load", "10",
                             "--clients", "1", "--max-requests", "10")
        assert report["ok"] == 10 and report["first_request_ms"] <= 5 * report["latency_ms"]["p50"] + 250
        # concurrent clients for a few seconds: no errors, and the batcher formed the batches
        report = load_report(tmp_path, grpc_port, "--protocol", "grpc", "--load", "3", "--clients", "8",
                             "--max-requests", "3000")
        assert report["ok"] > 0 and report["failed"] == 0, report["errors"]
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert metric_total(metrics, "batching_session") > 0, metrics[:2000]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_output_paths_never_collide():
    paths = serving_client.output_paths(["a/x.jpg", "b/x.jpg", "x.png", "y.jpg"], "out")
    assert paths == [os.path.join("out", n) for n in
                     ("x_completed.png", "x_2_completed.png", "x_3_completed.png", "y_completed.png")]


def test_app_fills_through_serving_as_through_the_export(served, servers, tmp_path):
    """``app --serving-url``: the photo cut, sent to the REST ``inpaint`` signature and
    blended back gives the same PNG as the export file run here."""
    export = served[1]
    remote = app.open_model(export, f"http://127.0.0.1:{servers['rest']}/v1/models/{MODEL}")
    assert remote.config == load_runner(export).config
    pngs = [app.fill_photo(runner, str(tmp_path), FACE_FILES[0], None)[3][0]
            for runner in (remote, load_runner(export))]
    np.testing.assert_array_equal(*[np.asarray(Image.open(png)) for png in pngs])
