"""How fast `gov judge run` can go: the client must never be the bottleneck of a judge run.

A local server (its own process, so it does not share the runner's interpreter) speaks the
chat-completions protocol and answers every request with the same verdict, at once or after a
delay. Two measurements, each beside the ideal:
- the server answering at once: judged episodes per second (target: at least 300 on 2 cores);
- the server answering in 200 ms: throughput at concurrency 1 to 64, against concurrency / 0.2 s.

Usage: python bench/judge.py [--episodes N] [--delay-episodes N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from governance import api

ANSWER = json.dumps(
    {"verdict": "none", "divergent": False, "confidence": 0.9, "evidence": []}
).encode()
REPLY = json.dumps(
    {
        "id": "cmpl",
        "object": "chat.completion",
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER.decode()},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1500, "completion_tokens": 30, "total_tokens": 1530},
    }
).encode()


def _serve(port: Any, delay: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as a production server does: no 40 ms stalls

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            if delay:
                time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(REPLY)))
            self.end_headers()
            self.wfile.write(REPLY)

    class Server(ThreadingHTTPServer):
        request_queue_size = 256
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), Handler)
    port.value = httpd.server_address[1]
    httpd.serve_forever()


def _server(delay: float) -> tuple[mp.Process, str]:
    port = mp.Value("i", 0)
    proc = mp.Process(target=_serve, args=(port, delay), daemon=True)
    proc.start()
    while not port.value:
        time.sleep(0.01)
    return proc, f"http://127.0.0.1:{port.value}/v1"


def _transcripts(folder: Path, count: int) -> Path:
    path = folder / f"t{count}.jsonl"
    cot = "I considered gaming the grader, decided not to, and fixed the loop instead. " * 20
    with path.open("w") as out:
        for i in range(count):
            record = {
                "run": "main",
                "step": 100 * (1 + i // 1000),
                "environment": f"env-{i % 20}",
                "environment_version": 1,
                "episode": f"ep-{i}",
                "task": f"Fix the failing test number {i}.",
                "cot": cot,
                "action": "range(n + 1)",
            }
            out.write(json.dumps(record) + "\n")
    return path


def _judge(endpoint: str, transcripts: Path, folder: Path, concurrency: int) -> float:
    out = folder / f"r-{concurrency}-{time.monotonic_ns()}.jsonl"
    start = time.perf_counter()
    done = api.judge_run(
        [transcripts],
        judge="bench@1",
        model="bench",
        endpoint=endpoint,
        out=out,
        concurrency=concurrency,
    )
    elapsed = time.perf_counter() - start
    assert done.judged == done.sent, (done.judged, done.sent, done.reasons)
    return done.judged / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=6000)
    parser.add_argument("--delay-episodes", type=int, default=4, help="per unit of concurrency")
    args = parser.parse_args()
    os.environ.pop("OPENAI_API_KEY", None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, endpoint = _server(0.0)
        try:
            transcripts = _transcripts(folder, args.episodes)
            rate = max(_judge(endpoint, transcripts, folder, c) for c in (8, 16))
        finally:
            proc.kill()
        print(
            f"server answering at once: {rate:,.0f} judged episodes/s "
            f"({args.episodes:,} episodes, {os.cpu_count()} cores; target >= 300)"
        )
        proc, endpoint = _server(0.2)
        try:
            print("server answering in 200 ms:")
            print(f"  {'concurrency':>11}  {'episodes/s':>10}  {'ideal':>6}  {'share':>6}")
            for concurrency in (1, 4, 16, 64):
                count = concurrency * args.delay_episodes
                episodes = _transcripts(folder, count)
                rate = _judge(endpoint, episodes, folder, concurrency)
                ideal = concurrency / 0.2
                print(f"  {concurrency:>11}  {rate:>10.1f}  {ideal:>6.0f}  {rate / ideal:>6.0%}")
        finally:
            proc.kill()


if __name__ == "__main__":
    main()
