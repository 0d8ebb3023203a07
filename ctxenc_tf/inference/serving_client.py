"""Talking to TF Serving: requests built from the signature the server reports (REST JSON or
gRPC ``PredictRequest``), replies read back to PNG bytes. The command is
:mod:`ctxenc_tf.cli.serve_client`."""

import base64
import binascii
import http.client
import io
import json
import os
import struct
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from PIL import Image
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.data import pipeline, screening
from ctxenc_tf.errors import DataError, ServingError, one_line
from ctxenc_tf.inference.photos import encode_png
from ctxenc_tf.inference.runner import SIGNATURE, Runner
from ctxenc_tf.utils.output_dir import unique_stems

DEFAULT_PORTS = {"rest": 8501, "grpc": 8500}

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

IMAGE_OUTPUT = "completed"  # the pixel output of the image signatures (see export.py)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The outputs this client reads, as numpy dtypes (DT_STRING: encoded images, bytes).
OUTPUT_DTYPES = {types_pb2.DT_STRING: np.dtype(object), types_pb2.DT_UINT8: np.dtype(np.uint8),
                 types_pb2.DT_FLOAT: np.dtype(np.float32)}

# Float outputs are images in [0, 1] (the exported graph pastes (tanh + 1) / 2 into the input).
# A value less than half a uint8 level outside still saves as the nearest level, 0 or 255, once
# clipped, so it is taken for rounding in the server's arithmetic; one further out is no image
# of this model.
RANGE_SLACK = 0.5 / 255.0

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


def model_image_size(signatures: dict):
    """The image size ``S`` the model's pixel signatures declare (their ``[N, S, S, 3]``
    input), or ``None`` when none does. ``serving_bytes`` declares no size of its own (any
    photo in, ``[N]`` PNGs out); its PNGs are ``S x S``."""
    for signature in signatures.values():
        for info in signature.inputs.values():
            dims = [d.size for d in info.tensor_shape.dim]
            if len(dims) == 4 and dims[3] == 3 and dims[1] == dims[2] > 0:
                return dims[1]
    return None


def checked_outputs(signature_name: str, signature, outputs: dict, count: int, image_size,
                    json_numbers: bool = False) -> dict:
    """The outputs of a reply to ``count`` images (``{name: array}``, from
    :func:`rest_outputs` or :func:`grpc_outputs`), checked against the request and the
    ``SignatureDef`` ``signature`` (named ``signature_name``) before anything is made of them.

    Every declared output must be there, ``[count, ...]`` with the declared dimensions and of
    the declared dtype (``json_numbers``: the numbers came as JSON from :func:`rest_outputs`,
    which carries no dtype, and are checked by their values instead): floats finite and in
    ``[0, 1]``, uint8 whole numbers in ``[0, 255]``, strings 8-bit RGB PNGs of ``image_size``
    x ``image_size`` pixels that decode. Returns ``{name: value}``: float32 arrays clipped to
    ``[0, 1]``, uint8 arrays, lists of PNG bytes. Raises :class:`ServingError` naming the
    signature and the output (a reply that does not fit is never saved)."""
    checked = {}
    for name, info in signature.outputs.items():
        field = f"{signature_name}: the server's '{name}'"
        if name not in outputs:
            raise ServingError(f"{signature_name}: the server's reply has no '{name}' (it holds {sorted(outputs)})")
        want = OUTPUT_DTYPES.get(info.dtype)
        if want is None:
            raise ServingError(f"{signature_name}: output '{name}' is {types_pb2.DataType.Name(info.dtype)}; "
                               "this client reads string, uint8 and float outputs")
        values = np.asarray(outputs[name])
        untyped = json_numbers and values.dtype == np.float64 and want.kind != "O"  # rest_outputs' numbers
        if values.dtype != want and not untyped:
            raise ServingError(f"{field} is {values.dtype}, not {want} as the signature declares")
        dims = [count] + [d.size for d in info.tensor_shape.dim][1:]
        if values.shape[:1] != (count,) or not info.tensor_shape.unknown_rank and (
                values.ndim != len(dims) or any(d >= 0 and d != got for d, got in zip(dims, values.shape))):
            declared = "[" + ", ".join(str(d) if d >= 0 else "?" for d in dims) + "]"
            raise ServingError(f"{field} is {list(values.shape)}, not {declared} as the signature "
                               f"declares for {count} image(s)")
        if want.kind == "O":  # encoded images
            checked[name] = [_checked_png(f"{field} value {i + 1} of {count}", bytes(value), image_size)
                             for i, value in enumerate(values)]
        else:
            checked[name] = _checked_pixels(field, values, want)
    return checked


def _checked_pixels(field: str, values: np.ndarray, want: np.dtype) -> np.ndarray:
    """``values`` in ``want`` (uint8 or float32) if they fit its range (see :data:`RANGE_SLACK`)."""
    if values.size == 0 or values.dtype == np.uint8:
        return values.astype(want)
    if not np.isfinite(values).all():
        raise ServingError(f"{field} holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if want == np.uint8:
        if low < 0 or high > 255 or (values != np.round(values)).any():
            raise ServingError(f"{field} holds values that are not whole numbers in [0, 255] "
                               f"(from {low:g} to {high:g})")
        return values.astype(np.uint8)
    if low < -RANGE_SLACK or high > 1.0 + RANGE_SLACK:
        raise ServingError(f"{field} holds values from {low:g} to {high:g}, outside [0, 1]")
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def _checked_png(which: str, value: bytes, size: int) -> bytes:
    """``value`` if it is an 8-bit RGB PNG of ``size`` x ``size`` pixels that decodes."""
    if not value.startswith(PNG_MAGIC):
        raise ServingError(f"{which} is not a PNG (it starts {value[:16]!r})")
    # The header chunk (IHDR, first, of fixed layout) is read before decoding, so that a
    # reply claiming a huge image is refused unread.
    if len(value) < 26 or value[12:16] != b"IHDR":
        raise ServingError(f"{which} is not a readable PNG (no header chunk)")
    width, height, depth, colour = struct.unpack(">IIBB", value[16:26])
    if (width, height, depth, colour) != (size, size, 8, 2):  # colour type 2: RGB
        raise ServingError(f"{which} is a {width}x{height} PNG of bit depth {depth}, colour type {colour}; "
                           f"expected {size}x{size} 8-bit RGB (colour type 2), the model's image size")
    try:
        with Image.open(io.BytesIO(value)) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as e:  # PIL's words for damaged data and chunks
        raise ServingError(f"{which} is not a readable PNG ({one_line(e)})") from e
    return value


def completed_pngs(signature_name: str, signature, outputs: dict, count: int, image_size,
                   json_numbers: bool = False) -> list:
    """PNG bytes of each of the ``count`` completed images in a reply's ``outputs``
    (``{name: array}``), checked first (:func:`checked_outputs`): the signature's DT_STRING
    output as is, else its ``completed`` pixels (``[count, S, S, 3]``) encoded here."""
    checked = checked_outputs(signature_name, signature, outputs, count, image_size, json_numbers)
    for name, info in signature.outputs.items():
        if info.dtype == types_pb2.DT_STRING:
            return checked[name]
    pixels = checked.get(IMAGE_OUTPUT)
    if pixels is None or pixels.ndim != 4 or pixels.shape[3] != 3:
        raise ServingError(f"{signature_name}: the signature declares no '{IMAGE_OUTPUT}' RGB images "
                           f"(its outputs: {sorted(signature.outputs)})")
    if pixels.dtype != np.uint8:
        pixels = np.round(pixels * 255.0).astype(np.uint8)
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
    """``{output_name: np.ndarray}`` from a columnar REST predict response: the signature's
    string outputs as bytes (``{"b64": ...}`` decoded), its numeric ones as float64 (JSON
    numbers carry no dtype; :func:`checked_outputs` checks that they fit the declared one)."""
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
                result[name] = np.asarray(value, np.float64)
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


def rest_signatures(url: str, timeout: float) -> dict:
    """``{name: SignatureDef}`` of the model at REST address ``url``, from its metadata."""
    return signature_map_from_json(_rest_call(f"{url}/metadata", timeout))


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
        self.signature = pick_signature(rest_signatures(self.url, timeout), SIGNATURE, self.url)
        super().__init__(self.url, config)

    def _run(self, images, masks):
        body = rest_predict_body(SIGNATURE, {"images": images, "masks": masks})
        c, n, s, o = self.config, len(images), self.config.image_size, self.config.output_size
        outputs = checked_outputs(SIGNATURE, self.signature, rest_outputs(
            _rest_call(f"{self.url}:predict", self.timeout, body), self.signature), n, s, json_numbers=True)
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

    json_numbers = False  # gRPC tensors carry their dtype, which must be the declared one

    def __init__(self, signatures: dict, signature_name: str, model: str, version, timeout: float):
        self.signature = pick_signature(signatures, signature_name, model)
        self.signature_name, self.model, self.version, self.timeout = signature_name, model, version, timeout
        self.input_name, self.dtype, size = image_input(self.signature)
        # The size of the images sent and of those expected back (serving_bytes: the PNGs').
        self.image_size = size or model_image_size(signatures)
        if self.image_size is None:
            raise ServingError(f"model '{model}' declares its image size in no signature (serving_default "
                               f"and serving_uint8 take [N, S, S, 3]), so replies to {signature_name} "
                               "cannot be checked")

    def complete(self, photos: list) -> list:
        """Photos (encoded bytes, any size) -> the completed images, PNG bytes; at most
        :data:`REQUEST_PHOTOS` photos per request."""
        return [png for i in range(0, len(photos), REQUEST_PHOTOS)
                for png in self.send(self.request(photos[i:i + REQUEST_PHOTOS]))]

    def send(self, request) -> list:
        """Send a prepared request; the completed images of its photos, PNG bytes."""
        count, prepared = request
        return completed_pngs(self.signature_name, self.signature, self._predict(prepared), count,
                              self.image_size, self.json_numbers)

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

    json_numbers = True  # its replies' numbers carry no dtype (rest_outputs)

    def __init__(self, base_url: str, model: str, signature_name: str, version=None, timeout: float = 60.0):
        self.url = model_url(base_url, model, version)
        super().__init__(rest_signatures(self.url, timeout), signature_name, model, version, timeout)

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
            super().__init__(dict(signature_map.signature_def), signature_name, model, version, timeout)
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


def read_photo_bytes(path: str) -> bytes:
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
