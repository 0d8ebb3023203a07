"""serve-client against a hostile stand-in server on 127.0.0.1: every malformed, short,
slow or oversized reply ends in one ``error:`` line within the deadline, and no output
file is written from it."""

import base64
import http.server
import io
import json
import threading
import time

import pytest
from PIL import Image

from conftest import exit_code
from ctxenc_tf.cli import serve_client as serve_client_cli

SIGNATURE = {"inputs": {"image_bytes": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}},
             "outputs": {"completed_png_bytes": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}},
             "method_name": "tensorflow/serving/predict"}
METADATA = {"metadata": {"signature_def": {"signature_def": {"serving_bytes": SIGNATURE}}}}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    return buffer.getvalue()


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


# reply mode -> (metadata JSON, predict reply body or a callable writing it, the error's words)
MODES = {
    "signature_def a string": ({"metadata": {"signature_def": "nonsense"}}, None, "no readable signature_def"),
    "outputs a number": (METADATA, {"outputs": 5}, "not a list"),
    "invalid base64": (METADATA, {"outputs": [{"b64": "@@@"}, {"b64": "@@@"}]}, "invalid base64"),
    "one image for two": (METADATA, {"outputs": [_b64(_png())]}, "not 2 PNG image(s)"),
    "not PNG bytes": (METADATA, {"outputs": [_b64(b"GIF89a..."), _b64(b"GIF89a...")]}, "not 2 PNG image(s)"),
    "not JSON": (METADATA, b"<html>busy</html>", "invalid JSON"),
    "trickle": (METADATA, "trickle", "within --timeout"),
    "oversized": (METADATA, "oversized", "larger than 64 MiB"),
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
        self._send(json.dumps(MODES[self.mode][0]).encode())

    def do_POST(self):  # predict
        self.rfile.read(int(self.headers["Content-Length"]))
        reply = MODES[self.mode][1]
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
                                             str(tmp_path / "out")])
    elapsed = time.monotonic() - started
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert MODES[mode][2] in lines[0], lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert elapsed < 5  # --timeout 1 bounds each request (the trickle would take 20 s)


def test_load_test_against_a_server_that_never_finishes_replying(server, tmp_path, capsys):
    Hostile.mode = "trickle"
    photo = tmp_path / "a.png"
    photo.write_bytes(_png())
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
