"""A real OpenAI-compatible HTTP server on 127.0.0.1 that injects faults, for testing ``forkctl collect``.

Behaviour is chosen per request by the *model name*: ``+``-separated directives, e.g. ``ignore-n+429-first``.

    ignore-n            return one choice whatever ``n`` is (as transformers serve / llama.cpp do)
    429-first           the first request for each distinct prompt gets 429 with ``Retry-After`` (see retry-after:S)
    500-first           ... gets 500
    slow-first          ... sleeps ``slow:S`` seconds (default 5) before answering, past a short client timeout
    malformed-first     ... gets 200 with a body that is not valid JSON
    empty-first         ... gets 200 with empty content
    429-always 500-always empty-always 401-always    every request fails that way
    delay:S             every answer waits S seconds (simulated generation time)
    reasoning           the reasoning goes in ``message.reasoning_content``, the content holds only the answer
    truncate            finish_reason "length"
    answer:X            the boxed answer is X (default: a number derived from the problem text)
    echo-key            error messages repeat the Authorization key (as some providers do, partly)
    greedy              the text depends on the prompt only: every request, choice and model gets the same
                        (a server that ignores the sampling settings)

Normal answers are deterministic: varied words seeded by (prompt, request, choice) ending in ``\\boxed{answer}``,
so responses to the same question differ in text but agree on the answer.

Run in a thread (``FaultServer().start()``) or as a process: ``python tests/fault_server.py --port 8123``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORDS = ("first we note that the sum of both parts equals the total so we compute each term carefully then "
         "check the remainder modulo small primes and combine the cases using symmetry which gives a clean "
         "count after simplifying the fraction we verify by substitution and conclude").split()


def default_answer(problem: str) -> str:
    return str(int(hashlib.sha256(problem.encode()).hexdigest(), 16) % 1000)


def _directives(model: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in model.split("+"):
        name, _, value = part.partition(":")
        out[name] = value
    return out


def _body_text(model: str, prompt: str, request_no: int, choice: int, answer: str) -> tuple[str, str]:
    """(reasoning, final) for one choice: distinct words per (model, prompt, request, choice), the same answer."""
    seed = int(hashlib.sha256(f"{model}|{prompt}|{request_no}|{choice}".encode()).hexdigest()[:12], 16)
    rng = random.Random(seed)
    reasoning = " ".join(rng.choice(WORDS) for _ in range(40))
    return reasoning, f"The answer is $\\boxed{{{answer}}}$."


class FaultServer:
    """The server; ``requests`` logs (time, model, status, authorization header) for assertions."""

    def __init__(self, port: int = 0, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        self.requests: list[dict[str, Any]] = []
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight: dict[str, int] = defaultdict(int)  # per model: the most requests open at once
        self._lock = threading.Lock()
        handler = self._handler_class()
        self.httpd = _Server(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def statuses(self, model: str | None = None) -> list[int]:
        return [r["status"] for r in self.requests if model is None or r["model"] == model]

    # ----------------------------------------------------------------------------------------------

    def _respond(self, body: dict[str, Any], auth: str | None) -> tuple[int, dict[str, str], bytes, float]:
        """(status, headers, payload, seconds to wait first) for one chat completion request."""
        model = str(body.get("model", ""))
        d = _directives(model)
        prompt = json.dumps(body.get("messages", []), sort_keys=True)
        with self._lock:
            self._counts[(model, prompt)] += 1
            count = self._counts[(model, prompt)]
        first = count == 1
        wait = float(d.get("delay") or 0)

        def fault(name: str) -> bool:
            return f"{name}-always" in d or (first and f"{name}-first" in d)

        # echo-key: error messages repeat the key, as some providers do (collect must scrub it)
        echo = f" (key {auth.removeprefix('Bearer ')})" if "echo-key" in d and auth else ""
        if fault("401"):
            return 401, {}, _json({"error": {"message": "invalid api key" + echo, "type": "auth"}}), wait
        if fault("429"):
            after = d.get("retry-after") or str(self.retry_after)
            return 429, {"Retry-After": after}, _json({"error": {"message": "rate limited"}}), wait
        if fault("500"):
            return 500, {}, _json({"error": {"message": "internal error" + echo}}), wait
        if fault("slow"):
            wait += float(d.get("slow") or 5)
        if fault("malformed"):
            return 200, {}, b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "trunc', wait
        problem = str((body.get("messages") or [{}])[-1].get("content", ""))
        answer = d.get("answer") or default_answer(problem)
        n = 1 if "ignore-n" in d else int(body.get("n") or 1)
        choices, completion_tokens = [], 0
        for i in range(n):
            reasoning, final = _body_text("greedy", prompt, 0, 0, answer) if "greedy" in d else \
                _body_text(model, prompt, count, i, answer)
            if fault("empty"):
                message: dict[str, Any] = {"role": "assistant", "content": ""}
            elif "reasoning" in d:
                message = {"role": "assistant", "content": final, "reasoning_content": reasoning}
            else:
                message = {"role": "assistant", "content": reasoning + "\n\n" + final}
            completion_tokens += len((reasoning + " " + final).split())
            choices.append({"index": i, "message": message,
                            "finish_reason": "length" if "truncate" in d else "stop"})
        payload = {"id": f"chatcmpl-{count}", "object": "chat.completion", "created": int(time.time()),
                   "model": model, "choices": choices,
                   "usage": {"prompt_tokens": len(problem.split()), "completion_tokens": completion_tokens,
                             "total_tokens": len(problem.split()) + completion_tokens}}
        return 200, {}, _json(payload), wait

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") in ("/health", "/v1/models"):
                    self._send(200, {}, _json({"object": "list", "data": []}))
                else:
                    self._send(404, {}, _json({"error": {"message": "not found"}}))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {}, _json({"error": {"message": "not found"}}))
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(400, {}, _json({"error": {"message": "bad json"}}))
                    return
                arrived = time.monotonic()  # before any work: the request's arrival as a client would time it
                model = str(body.get("model"))
                status, headers, payload, wait = server._respond(body, self.headers.get("Authorization"))
                with server._lock:
                    server.requests.append({"time": arrived, "model": body.get("model"),
                                            "status": status, "n": body.get("n"),
                                            "auth": self.headers.get("Authorization"),
                                            "body": body})
                    server._in_flight[model] += 1
                    server.max_in_flight[model] = max(server.max_in_flight[model], server._in_flight[model])
                try:
                    if wait:
                        time.sleep(wait)
                    self._send(status, headers, payload)
                finally:
                    with server._lock:
                        server._in_flight[model] -= 1

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to do

        return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the default backlog of 5 refuses connections under a burst of concurrent clients
    daemon_threads = True


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    args = parser.parse_args()
    server = FaultServer(args.port, args.retry_after)
    print(f"listening {server.base_url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
