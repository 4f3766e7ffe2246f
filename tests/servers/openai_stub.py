"""A misbehaving OpenAI-compatible server for the fault tests (the real behaviour is tested against a real
`transformers serve`): python -m tests.servers.openai_stub PORT MODE LOG.

Modes: ok (a fixed Seg-Zero answer, streamed chunk by chunk), slow (answers after 30 s), slow_stream (one chunk
every 0.2 s), error_500, error_400, garbage (200 with a non-JSON body), truncated (a stream that stops without
a finish reason and closes). Every request is logged as one JSON line: method, path, authorization header.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = ('<think>a stub</think><answer>{"bbox": [200,180,640,700], "points_1": [380,400], '
          '"points_2": [460,520]}</answer>')


def chunk(text: str | None, finish: str | None = None) -> bytes:
    payload = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "stub",
               "choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}
    return f"data: {json.dumps(payload)}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    mode = "ok"
    log_path = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _log(self) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"method": self.command, "path": self.path,
                                     "authorization": self.headers.get("Authorization", "")}) + "\n")

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._log()
        self._send(200, json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode())

    def do_POST(self) -> None:
        self._log()
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        mode = self.mode
        if mode == "error_500":
            return self._send(500, json.dumps({"message": "the GPU is on fire", "type": "server_error"}).encode())
        if mode == "error_400":
            return self._send(400, json.dumps({"message": "max_tokens is too large", "type": "invalid"}).encode())
        if mode == "garbage":
            return self._send(200, b"<html>proxy error</html>", "text/html")
        if mode == "slow":
            time.sleep(30)
        if not request.get("stream"):
            body = {"id": "s", "object": "chat.completion", "created": 0, "model": "stub",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}
            return self._send(200, json.dumps(body).encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        pieces = [ANSWER[i:i + 8] for i in range(0, len(ANSWER), 8)]
        try:
            for index, piece in enumerate(pieces):
                if mode == "truncated" and index == 3:
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk(piece))
                self.wfile.flush()
                if mode == "slow_stream":
                    time.sleep(0.2)
            self.wfile.write(chunk(None, "stop"))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with open(self.log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"closed_by_client": True}) + "\n")
        self.close_connection = True


def main() -> None:
    port, mode, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    Handler.mode, Handler.log_path = mode, log_path
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
