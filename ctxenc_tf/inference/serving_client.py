"""Talking to TF Serving: requests built from the signature the server reports (REST JSON or
gRPC ``PredictRequest``), replies read back to PNG bytes. The command is
:mod:`ctxenc_tf.cli.serve_client`."""

import base64
import binascii
import http.client
import json
import os
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.data import pipeline, screening
from ctxenc_tf.errors import DataError, ServingError
from ctxenc_tf.inference.photos import encode_png
from ctxenc_tf.inference.runner import SIGNATURE, Runner
from ctxenc_tf.utils.output_dir import unique_stems

DEFAULT_PORTS = {"rest": 8501, "grpc": 8500}

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

IMAGE_OUTPUT = "completed"  # the pixel output of the image signatures (see export.py)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# How TF Serving words a refusal when its batching queue is full (gRPC UNAVAILABLE, REST 503):
# the server is up but over capacity, which the load test must not report as "down".
QUEUE_FULL = "queue to which this task was submitted is full"
OVER_CAPACITY = "server over capacity, request refused"

# Photos per predict request: TF Serving's batcher refuses a request larger than its
# max_batch_size (32 in serving/batching_parameters.txt), so more photos go in several.
REQUEST_PHOTOS = 32


def signature_map_from_json(metadata: dict) -> dict:
    """The ``{name: SignatureDef}`` of a REST model-metadata response
    (``GET /v1/models/<model>/metadata``, JSON of ``GetModelMetadataResponse``)."""
    try:
        packed = dict(metadata["metadata"]["signature_def"])
        packed.pop("@type", None)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        json_format.ParseDict(packed, signature_map, ignore_unknown_fields=True)
    except (KeyError, TypeError, ValueError, json_format.ParseError) as e:
        raise ServingError(f"the server's model metadata has no readable signature_def ({str(e)[:200]})") from e
    return dict(signature_map.signature_def)


def pick_signature(signatures: dict, name: str, model: str):
    """``signatures[name]``, or :class:`ServingError` listing the ones served."""
    if name not in signatures:
        served = ", ".join(sorted(k for k in signatures if not k.startswith("__")))
        raise ServingError(f"model '{model}' has no signature '{name}' (it serves: {served})")
    return signatures[name]


def image_input(signature) -> tuple:
    """``(input_name, dtype_enum, image_size)`` of a signature taking one image batch:
    a DT_STRING ``[N]`` input (encoded photos; size ``None``) or DT_UINT8/DT_FLOAT
    ``[N, S, S, 3]``. Raises :class:`ServingError` for other signatures."""
    if len(signature.inputs) != 1:
        raise ServingError(f"signature takes inputs {sorted(signature.inputs)}; this client "
                           "sends one image input (use serving_bytes, serving_uint8 or serving_default)")
    name, info = next(iter(signature.inputs.items()))
    dims = [d.size for d in info.tensor_shape.dim]
    if info.dtype == types_pb2.DT_STRING and len(dims) == 1:
        return name, info.dtype, None
    if info.dtype in (types_pb2.DT_UINT8, types_pb2.DT_FLOAT) and len(dims) == 4 and dims[3] == 3:
        return name, info.dtype, dims[1]
    raise ServingError(f"input '{name}' is {types_pb2.DataType.Name(info.dtype)} {dims}, "
                       "not encoded images [N] or pixels [N, S, S, 3]")


def encode_inputs(photos: list, dtype: int, image_size) -> np.ndarray:
    """Photos (encoded bytes) as the input tensor: ``[N]`` object array of bytes for
    DT_STRING; else decoded, centre-square cropped and resized (:func:`pipeline.decode_image`)
    to ``[N, S, S, 3]`` uint8 in ``[0, 255]`` or float32 in ``[0, 1]``."""
    if dtype == types_pb2.DT_STRING:
        return np.array(photos, dtype=object)
    pixels = np.stack([(pipeline.decode_image(p, image_size).numpy() + 1.0) / 2.0 for p in photos])
    if dtype == types_pb2.DT_UINT8:
        return np.round(pixels * 255.0).astype(np.uint8)
    return pixels.astype(np.float32)


def completed_pngs(signature, outputs: dict, count: int) -> list:
    """PNG bytes of each of the ``count`` completed images in a response's ``outputs``
    (``{name: array}``): the signature's DT_STRING output as is, else its ``completed``
    pixels (``[count, S, S, 3]``) encoded here. Raises :class:`ServingError` when the
    reply does not hold ``count`` images of that kind (never a wrong file written)."""
    for name, info in signature.outputs.items():
        if info.dtype == types_pb2.DT_STRING:
            pngs = [bytes(v) for v in np.atleast_1d(np.asarray(outputs.get(name, []), dtype=object))]
            if len(pngs) != count or not all(p.startswith(PNG_MAGIC) for p in pngs):
                raise ServingError(f"the server's '{name}' holds {len(pngs)} value(s), not {count} PNG image(s)")
            return pngs
    if IMAGE_OUTPUT not in outputs:
        raise ServingError(f"response has no '{IMAGE_OUTPUT}' output (got {sorted(outputs)})")
    pixels = np.asarray(outputs[IMAGE_OUTPUT])
    if pixels.ndim != 4 or pixels.shape[0] != count or pixels.shape[3] != 3:
        raise ServingError(f"the server's '{IMAGE_OUTPUT}' is {list(pixels.shape)}, not {count} RGB images")
    if pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return [encode_png(image) for image in pixels]


def model_url(base_url: str, model: str, version=None) -> str:
    """``<base>/v1/models/<model>[/versions/<version>]``."""
    url = f"{base_url.rstrip('/')}/v1/models/{model}"
    return url if version is None else f"{url}/versions/{version}"


def rest_predict_body(signature_name: str, inputs: dict) -> bytes:
    """TF Serving REST predict request (columnar ``inputs`` format) for ``{name: array}``,
    as the JSON bytes to POST: encoded images as ``{"b64": ...}`` objects, pixel tensors
    as nested lists."""
    def column(values):
        if values.dtype == object:
            return [{"b64": base64.b64encode(v).decode("ascii")} for v in values]
        return values.tolist()

    body = {"signature_name": signature_name, "inputs": {k: column(v) for k, v in inputs.items()}}
    return json.dumps(body).encode("ascii")


def decode_rest_json(body: bytes) -> dict:
    """Parse a TF Serving REST response body (JSON; binary outputs, whose names end in
    ``_bytes``, come as ``{"b64": ...}``)."""
    try:
        return json.loads(body)
    except ValueError as e:
        raise ServingError(f"server sent invalid JSON ({e})") from e


def rest_outputs(response: dict, signature) -> dict:
    """``{output_name: np.ndarray}`` from a columnar REST predict response, dtypes taken
    from the signature (strings as bytes, ``{"b64": ...}`` decoded)."""
    if not isinstance(response, dict) or "outputs" not in response:
        raise ServingError(f"unexpected REST response ({str(response)[:100]})")
    outputs = response["outputs"]
    names = list(signature.outputs)
    if not (isinstance(outputs, dict) and set(outputs) == set(names)):
        outputs = {names[0]: outputs}  # one output: TF Serving drops the name
    result = {}
    for name, value in outputs.items():
        info = signature.outputs[name]
        if not isinstance(value, list):
            raise ServingError(f"the server's output '{name}' is {type(value).__name__}, not a list")
        if info.dtype == types_pb2.DT_STRING:
            if not all(isinstance(v, dict) and isinstance(v.get("b64"), str) for v in value):
                raise ServingError(f"output '{name}' is not {{\"b64\": ...}} encoded; binary "
                                   "outputs must be named '*_bytes' in the SavedModel")
            try:
                result[name] = np.array([base64.b64decode(v["b64"], validate=True) for v in value], dtype=object)
            except (binascii.Error, ValueError) as e:
                raise ServingError(f"output '{name}' holds invalid base64 ({e})") from e
        else:
            try:
                result[name] = np.asarray(value, np.uint8 if info.dtype == types_pb2.DT_UINT8 else np.float32)
            except (TypeError, ValueError) as e:
                raise ServingError(f"output '{name}' is not a numeric tensor ({str(e)[:100]})") from e
    return result


def _rest_call(url: str, timeout: float, data: bytes | None = None):
    """GET ``url`` (``data`` None) or POST the JSON ``data``; the decoded JSON reply."""
    deadline = time.monotonic() + timeout
    try:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return decode_rest_json(_read_reply(reply, url, deadline, timeout))
    except urllib.error.HTTPError as e:
        message = e.read().decode("utf-8", "replace")
        try:
            message = json.loads(message).get("error", message)
        except (ValueError, AttributeError):
            pass
        message = " ".join(str(message).split())[:300]
        if e.code == 404:
            raise ServingError(f"{url}: model or version not found on the server ({message}); "
                               "check the model name and version") from e
        if e.code == 503 and QUEUE_FULL in message:
            raise ServingError(f"{url}: {OVER_CAPACITY} (HTTP 503: {message})") from e
        raise ServingError(f"{url}: HTTP {e.code}: {message}") from e
    except (http.client.HTTPException, ValueError) as e:  # IncompleteRead, bad status line, ...
        raise ServingError(f"{url}: broken reply ({type(e).__name__}: {str(e)[:100]})") from e
    except (urllib.error.URLError, OSError) as e:
        if isinstance(getattr(e, "reason", e), TimeoutError) or isinstance(e, TimeoutError):
            raise ServingError(f"{url}: no reply within --timeout {timeout:g} s") from e
        reason = getattr(e, "reason", e)
        raise ServingError(f"cannot reach TF Serving at {url} ({reason}); is the server running? "
                           "(see serving/README.md)") from e


def rest_signature(url: str, signature_name: str, what: str, timeout: float):
    """The ``SignatureDef`` ``signature_name`` of the model at REST address ``url``, from
    its metadata; :class:`ServingError` naming ``what`` when the model has none such."""
    return pick_signature(signature_map_from_json(_rest_call(f"{url}/metadata", timeout)), signature_name, what)


def _read_reply(reply, url: str, deadline: float, timeout: float) -> bytes:
    """The body of ``reply``, read in blocks as they arrive: ``timeout`` holds for the
    whole reply (a server trickling bytes cannot stretch it; one block waits at most the
    socket's own ``timeout``) and at most :data:`MAX_MESSAGE_BYTES` are accepted. Raises
    :class:`ServingError`."""
    chunks, size = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServingError(f"{url}: no complete reply within --timeout {timeout:g} s")
        chunk = reply.read1(1 << 16)  # what has arrived, waiting at most the socket timeout
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise ServingError(f"{url}: reply larger than {MAX_MESSAGE_BYTES // 2**20} MiB; refused")
        chunks.append(chunk)


class ServingRunner(Runner):
    """A model served by TF Serving, run through its REST ``inpaint`` signature: the same
    :meth:`Runner.inpaint` as a local file, so photos are cut and blended here at full
    resolution. ``url`` is the model's REST address (``http://HOST:8501/v1/models/NAME``);
    ``config`` the export's :class:`ModelConfig`, which the server does not report."""

    kind = "serving"

    def __init__(self, url: str, config: ModelConfig, timeout: float = 60.0):
        self.url, self.timeout = url.rstrip("/"), timeout
        self.signature = rest_signature(self.url, SIGNATURE, self.url, timeout)
        super().__init__(self.url, config)

    def _run(self, images, masks):
        body = rest_predict_body(SIGNATURE, {"images": images, "masks": masks})
        outputs = rest_outputs(_rest_call(f"{self.url}:predict", self.timeout, body), self.signature)
        c, n, s, o = self.config, len(images), self.config.image_size, self.config.output_size
        expected = {"completed": (n, s, s, 3), "prediction": (n, o, o, 3)}
        got = {k: tuple(np.shape(outputs.get(k))) for k in expected}
        if got != expected:
            raise ServingError(f"{self.url}: the server's inpaint outputs are {got}, not {expected} "
                               f"(is --model the export it serves? {c.image_size}px, {c.output_size}px out)")
        return outputs["completed"], outputs["prediction"]


def tensor_proto(values: np.ndarray, dtype=None):
    """``TensorProto`` of ``values``: an object array of bytes as DT_STRING, else its own
    dtype or TF ``dtype`` (enum)."""
    tensor = list(values) if values.dtype == object else values
    return tf.make_tensor_proto(tensor, dtype=None if dtype is None else tf.dtypes.as_dtype(dtype),
                                shape=values.shape)


def grpc_predict_request(model, signature_name, input_name, values, dtype, version=None):
    """``PredictRequest`` for one image input ``values`` of TF ``dtype`` (enum)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[input_name].CopyFrom(tensor_proto(values, dtype))
    return request


def grpc_outputs(response) -> dict:
    """``{output_name: np.ndarray}`` of a ``PredictResponse`` (strings as bytes)."""
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def _grpc_error(e, target, model) -> ServingError:
    code = e.code() if hasattr(e, "code") else None
    detail = " ".join(str(e.details() if hasattr(e, "details") else e).split())[:300]
    if code == grpc.StatusCode.UNAVAILABLE and QUEUE_FULL in detail:
        return ServingError(f"{target}: {OVER_CAPACITY} (UNAVAILABLE: {detail})")
    if code == grpc.StatusCode.UNAVAILABLE:
        return ServingError(f"cannot reach TF Serving at {target} ({detail}); is the server "
                            "running? (see serving/README.md)")
    if code == grpc.StatusCode.NOT_FOUND:
        return ServingError(f"{target}: model '{model}' not found ({detail})")
    return ServingError(f"{target}: {code.name if code else 'error'}: {detail}")


class ServedModel:
    """One model (and version) on a TF Serving server and the signature used to call it,
    read once from the server's metadata. :meth:`request` builds a predict request for
    some photos, :meth:`send` sends one (thread-safe, so a prepared request can be sent
    again and again, by many threads, as the load test does), :meth:`complete` does both.
    Every failure is a :class:`ServingError`. Use :func:`connect`; close it (or use
    ``with``) to release the gRPC channel."""

    def __init__(self, signature, signature_name: str, model: str, version, timeout: float):
        self.signature, self.signature_name = signature, signature_name
        self.model, self.version, self.timeout = model, version, timeout
        self.input_name, self.dtype, self.image_size = image_input(signature)

    def complete(self, photos: list) -> list:
        """Photos (encoded bytes, any size) -> the completed images, PNG bytes; at most
        :data:`REQUEST_PHOTOS` photos per request."""
        return [png for i in range(0, len(photos), REQUEST_PHOTOS)
                for png in self.send(self.request(photos[i:i + REQUEST_PHOTOS]))]

    def send(self, request) -> list:
        """Send a prepared request; the completed images of its photos, PNG bytes."""
        count, prepared = request
        return completed_pngs(self.signature, self._predict(prepared), count)

    def request(self, photos: list):
        """A predict request for ``photos``, ready for :meth:`send`."""
        return len(photos), self._prepare(encode_inputs(photos, self.dtype, self.image_size))

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RestModel(ServedModel):
    """A served model over REST (JSON; ``base_url`` like ``http://host:8501``)."""

    def __init__(self, base_url: str, model: str, signature_name: str, version=None, timeout: float = 60.0):
        self.url = model_url(base_url, model, version)
        super().__init__(rest_signature(self.url, signature_name, model, timeout), signature_name, model,
                         version, timeout)

    def _prepare(self, values):
        return rest_predict_body(self.signature_name, {self.input_name: values})

    def _predict(self, body: bytes) -> dict:
        return rest_outputs(_rest_call(f"{self.url}:predict", self.timeout, body), self.signature)


class GrpcModel(ServedModel):
    """A served model over gRPC (``target`` like ``host:8500``), one channel for all calls."""

    def __init__(self, target: str, model: str, signature_name: str, version=None, timeout: float = 60.0):
        self.target = target
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self.channel = grpc.insecure_channel(target, options=options)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = int(version)
        try:
            metadata = self._call(self.stub.GetModelMetadata, request, timeout, model)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            metadata.metadata["signature_def"].Unpack(signature_map)
            signature = pick_signature(dict(signature_map.signature_def), signature_name, model)
            super().__init__(signature, signature_name, model, version, timeout)
        except ServingError:
            self.channel.close()
            raise

    def _call(self, method, request, timeout, model):
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as e:
            raise _grpc_error(e, self.target, model) from e

    def _prepare(self, values):
        return grpc_predict_request(self.model, self.signature_name, self.input_name, values,
                                    self.dtype, self.version)

    def _predict(self, request) -> dict:
        return grpc_outputs(self._call(self.stub.Predict, request, self.timeout, self.model))

    def close(self):
        self.channel.close()


def connect(protocol: str, host: str, port: int, model: str, signature_name: str, version=None,
            timeout: float = 60.0) -> ServedModel:
    """The :class:`ServedModel` ``model`` on the server at ``host:port`` over ``protocol``
    (``"rest"`` or ``"grpc"``), its ``signature_name`` read from the server's metadata."""
    if protocol == "rest":
        return RestModel(f"http://{host}:{port}", model, signature_name, version, timeout)
    return GrpcModel(f"{host}:{port}", model, signature_name, version, timeout)


def read_photo(path: str) -> bytes:
    """The bytes of an image file; :class:`DataError` naming it if unusable."""
    reason = screening.screen_file(path)
    if reason:
        raise DataError(f"{path}: {reason}")
    with open(path, "rb") as f:
        return f.read()


def output_paths(inputs: list, out: str) -> list:
    """Where each completed image goes: ``out`` itself for one input and a ``.png``
    ``out``; else ``out/<input name>_completed.png`` (repeated names numbered ``_2``, ...)."""
    if len(inputs) == 1 and out.lower().endswith(".png"):
        return [out]
    stems = unique_stems([os.path.splitext(os.path.basename(p))[0] for p in inputs])
    return [os.path.join(out, stem + "_completed.png") for stem in stems]
