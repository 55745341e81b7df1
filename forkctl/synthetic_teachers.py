"""Teachers for the synthetic multi-strategy task, served over the OpenAI chat-completions protocol on 127.0.0.1.

Each served model name is one strategy of :mod:`forkctl.tasks.synthetic` (``forward``, ``backward``,
``direct``) or a walk of :mod:`forkctl.tasks.walk` (``front``, ``back``); ``<strategy>+sloppy`` answers wrongly
on about half of the questions (decided by a hash of the question, so reruns agree), which gives ``forkctl
filter`` something to drop. The server is what ``forkctl run`` starts for the embedded toy pipeline
(``examples/toy``), so ``collect`` talks real HTTP to real teachers without a GPU or an API key. Standard library
only.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from forkctl.tasks import walk
from forkctl.tasks.synthetic import PROBLEM_PREFIX, STRATEGIES, find_choice, parse_problem, solve

SLOPPY = "+sloppy"
MODELS = STRATEGIES + walk.WALKS


def answer(model: str, user_text: str) -> str:
    """The response of teacher ``model`` (a strategy of the synthetic or the synthetic-walk task) to a user message
    holding a problem of that task."""
    strategy, sloppy = model.removesuffix(SLOPPY), model.endswith(SLOPPY)
    if strategy in STRATEGIES:
        start = user_text.find(PROBLEM_PREFIX)
        if start < 0:
            raise ValueError("the user message holds no synthetic problem ('sum mod 10: ...')")
        problem_text = user_text[start:].splitlines()[0]
        text = solve(parse_problem(problem_text), strategy)
    elif strategy in walk.WALKS:
        problem = find_choice(user_text)
        if problem is None:
            raise ValueError("the user message holds no synthetic-walk problem ('first of: ...')")
        problem_text = problem.text
        text = walk.solve(problem, strategy)
    else:
        raise ValueError(f"unknown teacher model {model!r}: use one of {', '.join(MODELS)} (+sloppy)")
    if sloppy and int(hashlib.sha256(problem_text.encode()).hexdigest(), 16) % 2:
        right = text.rsplit("answer=", 1)[1]
        text = text.rsplit("answer=", 1)[0] + f"answer={(int(right) + 1) % 10}"
    return text


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # quiet: a pipeline prints its own progress
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": s, "object": "model"} for s in MODELS]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            user = next(m["content"] for m in reversed(req["messages"]) if m["role"] == "user")
            text = answer(req["model"], user)
        except (ValueError, KeyError, StopIteration, TypeError) as exc:
            self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            return
        n = int(req.get("n") or 1)
        prompt_tokens, completion_tokens = len(user.split()), len(text.split())
        self._send(200, {
            "id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": req["model"],
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        for i in range(n)],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n * completion_tokens,
                      "total_tokens": prompt_tokens + n * completion_tokens}})


class TeachersServer:
    """The server in a background thread: ``with TeachersServer() as s: s.base_url``."""

    def __init__(self, port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> TeachersServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_teachers_file(path: str | Path, base_url: str, models: list[str], temperature: float = 0.7) -> Path:
    """A collect teachers YAML for the served models (one teacher each, named after its model)."""
    teachers = [{"name": m.replace("+", "-"), "base_url": base_url, "model": m,
                 "params": {"temperature": temperature}, "send_n": True} for m in models]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"teachers": teachers}, sort_keys=False))
    return path
