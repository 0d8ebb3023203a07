"""serve-client against a hostile stand-in server on 127.0.0.1: every malformed, short,
slow or oversized reply ends in one ``error:`` line within the deadline, and no output
file is written from it."""

import base64
import http.server
import io
import json
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2

from ctxenc_tf.cli import serve_client as serve_client_cli
from ctxenc_tf.errors import ServingError
from ctxenc_tf.inference import serving_client
from helpers import exit_code, tiny_model


def _tensor(dtype: str, *dims: int) -> dict:
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d)} for d in dims]}}


# The signatures of a 32x32 export with a 16x16 hole (export/saved_model.py), as the metadata declares them.
S, P = 32, 16  # image side, predicted side
SIGNATURES = {
    "serving_bytes": {"inputs": {"image_bytes": _tensor("DT_STRING", -1)},
                      "outputs": {"completed_png_bytes": _tensor("DT_STRING", -1)}},
    "serving_default": {"inputs": {"images": _tensor("DT_FLOAT", -1, S, S, 3)},
                        "outputs": {"completed": _tensor("DT_FLOAT", -1, S, S, 3),
                                    "prediction": _tensor("DT_FLOAT", -1, P, P, 3)}},
    "serving_uint8": {"inputs": {"images": _tensor("DT_UINT8", -1, S, S, 3)},
                      "outputs": {"completed": _tensor("DT_UINT8", -1, S, S, 3),
                                  "prediction": _tensor("DT_UINT8", -1, P, P, 3)}},
    "inpaint": {"inputs": {"images": _tensor("DT_FLOAT", -1, S, S, 3), "masks": _tensor("DT_FLOAT", -1, S, S, 1)},
                "outputs": {"completed": _tensor("DT_FLOAT", -1, S, S, 3),
                            "prediction": _tensor("DT_FLOAT", -1, P, P, 3)}},
}
METADATA = {"metadata": {"signature_def": {"signature_def": SIGNATURES}}}


def _png(size=4, mode="RGB", cut=None) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (size, size, len(mode)), dtype=np.uint8)
    Image.fromarray(noise, mode).save(buffer, "PNG")
    return buffer.getvalue()[:cut]


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def _pixels(size, value=0.5, at_0=None) -> list:
    """Two images [2, size, size, 3] of ``value``, the first pixel's red ``at_0`` if given."""
    images = np.full((2, size, size, 3), float(value))
    if at_0 is not None:
        images[0, 0, 0, 0] = at_0
    return images.tolist()


def _pixel_reply(completed, prediction=None) -> dict:
    return {"outputs": {"completed": completed, "prediction": prediction or _pixels(P)}}


# reply mode -> (signature asked for, metadata JSON, the predict reply: its body, a function of
# the request's body giving it, or how to send it, the error's words). The table's test sends two photos.
BYTES_AT = "serving_bytes: the server's 'completed_png_bytes'"
MODES = {
    "signature_def a string": ("serving_bytes", {"metadata": {"signature_def": "nonsense"}}, None,
                               "no readable signature_def"),
    "outputs a number": ("serving_bytes", METADATA, {"outputs": 5}, "not a list"),
    "invalid base64": ("serving_bytes", METADATA, {"outputs": [{"b64": "@@@"}, {"b64": "@@@"}]}, "invalid base64"),
    "one image for two": ("serving_bytes", METADATA, {"outputs": [_b64(_png(S))]},
                          f"{BYTES_AT} is [1], not [2] as the signature declares for 2 image(s)"),
    "not PNG bytes": ("serving_bytes", METADATA, {"outputs": [_b64(b"GIF89a..."), _b64(b"GIF89a...")]},
                      f"{BYTES_AT} value 1 of 2 is not a PNG (it starts b'GIF89a...')"),
    "1x1 PNG": ("serving_bytes", METADATA,  # one for each photo sent
                lambda body: {"outputs": [_b64(_png(1)) for _ in body["inputs"]["image_bytes"]]},
                f"{BYTES_AT} value 1 of 2 is a 1x1 PNG"),
    "RGBA PNG": ("serving_bytes", METADATA, {"outputs": [_b64(_png(S)), _b64(_png(S, "RGBA"))]},
                 f"{BYTES_AT} value 2 of 2 is a 32x32 PNG of bit depth 8, colour type 6"),
    "truncated PNG": ("serving_bytes", METADATA, {"outputs": [_b64(_png(S)), _b64(_png(S, cut=1000))]},
                      f"{BYTES_AT} value 2 of 2 is not a readable PNG (image file is truncated)"),
    "1x1 pixels with NaN": ("serving_default", METADATA, _pixel_reply(_pixels(1, at_0=float("nan"))),
                            "serving_default: the server's 'completed' is [2, 1, 1, 3], not [2, 32, 32, 3]"),
    "NaN pixel": ("serving_default", METADATA, _pixel_reply(_pixels(S, at_0=float("nan"))),
                  "serving_default: the server's 'completed' holds NaN or infinite values"),
    "pixel above 1": ("serving_default", METADATA, _pixel_reply(_pixels(S, at_0=1.5)),
                      "serving_default: the server's 'completed' holds values from 0.5 to 1.5, outside [0, 1]"),
    "small prediction": ("serving_default", METADATA, _pixel_reply(_pixels(S), _pixels(1)),
                         "serving_default: the server's 'prediction' is [2, 1, 1, 3], not [2, 16, 16, 3]"),
    "uint8 of 300": ("serving_uint8", METADATA, _pixel_reply(_pixels(S, 7, at_0=300), _pixels(P, 7)),
                     "serving_uint8: the server's 'completed' holds values that are not whole numbers in [0, 255]"),
    "uint8 of 2.5": ("serving_uint8", METADATA, _pixel_reply(_pixels(S, 7, at_0=2.5), _pixels(P, 7)),
                     "serving_uint8: the server's 'completed' holds values that are not whole numbers in [0, 255]"),
    "not JSON": ("serving_bytes", METADATA, b"<html>busy</html>", "invalid JSON"),
    "trickle": ("serving_bytes", METADATA, "trickle", "within --timeout"),
    "oversized": ("serving_bytes", METADATA, "oversized", "larger than 64 MiB"),
}


class Hostile(http.server.BaseHTTPRequestHandler):
    mode = None

    def log_message(self, *args):
        pass

    def _send(self, body: bytes, length=None):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length if length is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # model metadata
        self._send(json.dumps(MODES[self.mode][1]).encode())

    def do_POST(self):  # predict
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reply = MODES[self.mode][2]
        if callable(reply):
            reply = reply(request)
        if reply == "trickle":  # one byte every 0.2 s, 100 bytes promised
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except ConnectionError:  # the client gave up, as it should
                pass
        elif reply == "oversized":
            size = 65 * 2**20
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b" " * 2**20
            for _ in range(65):
                self.wfile.write(block)
        else:
            self._send(reply if isinstance(reply, bytes) else json.dumps(reply).encode())


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_hostile_replies_end_in_one_line(mode, server, tmp_path, capsys):
    Hostile.mode = mode
    photos = []
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(_png())
        photos.append(str(tmp_path / name))
    started = time.monotonic()
    code = exit_code(serve_client_cli.main, [*photos, "--port", str(server.server_address[1]),
                                             "--host", "127.0.0.1", "--timeout", "1", "--out",
                                             str(tmp_path / "out"), "--signature", MODES[mode][0]])
    elapsed = time.monotonic() - started
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert MODES[mode][3] in lines[0], lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert elapsed < 5  # --timeout 1 bounds each request (the trickle would take 20 s)


def test_load_test_against_a_server_that_never_finishes_replying(server, tmp_path, capsys):
    Hostile.mode = "trickle"
    photo = tmp_path / "a.png"
    photo.write_bytes(_png(S))
    started = time.monotonic()
    code = exit_code(serve_client_cli.main, [str(photo), "--port", str(server.server_address[1]),
                                             "--host", "127.0.0.1", "--timeout", "0.5", "--load", "1",
                                             "--clients", "2", "--out", str(tmp_path / "load.json")])
    elapsed = time.monotonic() - started
    report = json.loads((tmp_path / "load.json").read_text())
    assert code == 0 and report["ok"] == 0 and report["failed"] == report["requests"] >= 2
    assert report["unfinished"] == 0 and report["latency_ms"] == {}
    assert all("within --timeout 0.5 s" in reason for reason in report["errors"]), report["errors"]
    assert elapsed < 5  # 1 s of load, then at most one --timeout of 0.5 s per client
    assert "0 of" in capsys.readouterr().out


def test_load_test_counts_replies_that_do_not_fit_as_errors(server, tmp_path, capsys):
    Hostile.mode = "1x1 PNG"
    photo = tmp_path / "a.png"
    photo.write_bytes(_png(S))
    code = exit_code(serve_client_cli.main, [str(photo), "--port", str(server.server_address[1]),
                                             "--host", "127.0.0.1", "--timeout", "5", "--load", "30",
                                             "--max-requests", "4", "--out", str(tmp_path / "load.json")])
    report = json.loads((tmp_path / "load.json").read_text())
    assert code == 0 and (report["requests"], report["ok"], report["failed"]) == (4, 0, 4)
    assert report["latency_ms"] == {} and report["first_request_ms"] is None
    assert report["errors"] == {f"{BYTES_AT} value 1 of 1 is a 1x1 PNG of bit depth 8, colour type 2; expected "
                                "32x32 8-bit RGB (colour type 2), the model's image size": 4}
    assert "0 of 4" in capsys.readouterr().out


def test_the_app_refuses_an_inpaint_reply_that_does_not_fit(server):
    """``app --serving-url`` (:class:`~ctxenc_tf.inference.serving_client.ServingRunner`): its
    replies go through the same check."""
    Hostile.mode = "NaN pixel"
    runner = serving_client.ServingRunner(f"http://127.0.0.1:{server.server_address[1]}/v1/models/ctxenc",
                                          tiny_model(), timeout=5)
    images = np.full((2, S, S, 3), 0.5, np.float32)
    with pytest.raises(ServingError, match="inpaint: the server's 'completed' holds NaN or infinite values"):
        runner.inpaint(images, runner.centre_masks(2))


@pytest.mark.parametrize("dtype,words", [(np.float16, "is float16, not float32"),
                                         (np.int32, "is int32, not float32"),
                                         (np.float64, "is float64, not float32")])
def test_grpc_tensors_of_another_dtype_are_refused(dtype, words):
    """A gRPC reply carries its dtype; one other than the signature's is refused (JSON
    numbers carry none and are checked by value, as in the cases above)."""
    signature = serving_client.signature_map_from_json(METADATA)["serving_default"]
    response = predict_pb2.PredictResponse()
    response.outputs["completed"].CopyFrom(tf.make_tensor_proto(np.zeros((1, S, S, 3), dtype)))
    response.outputs["prediction"].CopyFrom(tf.make_tensor_proto(np.zeros((1, P, P, 3), np.float32)))
    outputs = serving_client.grpc_outputs(predict_pb2.PredictResponse.FromString(response.SerializeToString()))
    with pytest.raises(ServingError, match=f"serving_default: the server's 'completed' {words}"):
        serving_client.completed_pngs("serving_default", signature, outputs, 1, S)
