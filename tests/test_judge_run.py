"""`gov judge run` against a real HTTP server on 127.0.0.1 that speaks the chat-completions
protocol as vLLM does, its answers scripted per episode."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from governance.judging.rubric import BUNDLED as RUBRIC

SECRET = "sk-test-never-written-4242"
COT = "I could hard-code the expected output. That would game the test. Instead I fix the loop."


def _answer(verdict: str = "rejected", evidence: list[dict[str, Any]] | None = None) -> str:
    if evidence is None:
        start = COT.index("I could")
        evidence = [
            {"quote": "I could hard-code the expected output.", "start": start, "end": start + 38}
        ]
    return json.dumps(
        {"verdict": verdict, "divergent": False, "confidence": 0.9, "evidence": evidence}
    )


class Script:
    """What the server answers, per episode (found in the request's text): a list of replies,
    one per request in turn (the last repeats). A reply: (status, headers, body, delay)."""

    def __init__(self) -> None:
        self.replies: dict[str, list[tuple[int, dict[str, str], Any, float]]] = {}
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.inflight = 0
        self.most = 0
        self.lock = threading.Lock()

    def reply(self, episode: str) -> tuple[int, dict[str, str], Any, float]:
        found = self.replies.get(episode)
        if not found:
            return 200, {}, _completion(_answer()), 0.0
        index = min(self.requests[episode] - 1, len(found) - 1)
        return found[index]


def _completion(content: str | None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    message.update(extra.pop("message", {}))
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "judge-model",
        "choices": [{"index": 0, "message": message, "finish_reason": extra.pop("finish", "stop")}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, {}, {"object": "list", "data": [{"id": "judge-model"}]})

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            if self.path != "/v1/chat/completions":
                self._send(404, {}, {"error": {"message": "no such route"}})
                return
            if self.headers.get("Authorization") != f"Bearer {SECRET}":
                self._send(401, {}, {"error": {"message": "Incorrect API key provided"}})
                return
            if body["model"] != "judge-model":
                self._send(404, {}, {"error": {"message": f"model {body['model']} not found"}})
                return
            episode = re.search(r"episode (e\d+)", body["messages"][1]["content"]).group(1)
            with script.lock:
                script.requests[episode] += 1
                script.bodies.append(body)
                script.inflight += 1
                script.most = max(script.most, script.inflight)
            try:
                status, headers, reply, delay = script.reply(episode)
                time.sleep(delay or 0.02)  # long enough for requests to overlap
                self._send(status, headers, reply)
            finally:
                with script.lock:
                    script.inflight -= 1

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that hangs up (a run stopped at once) is no news to the test

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def _transcripts(path: Path, count: int, **extra: Any) -> Path:
    records = [
        {
            "run": "main",
            "step": 100,
            "environment": "math",
            "environment_version": 1,
            "episode": f"e{i}",
            "task": f"Fix the failing test (episode e{i}).",
            "cot": COT,
            "action": "Changed range(n) to range(n + 1).",
            **extra,
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def judged(registry, artifact, monkeypatch) -> Path:
    """A workspace with checkpoint main@100 and the judge gov-cot@1 applying gov's rubric."""
    registry.add_checkpoint("main", 100, artifact("s100.pt"), {"math": 1.0})
    registry.add_judge("gov-cot", "1", rubric=[RUBRIC])
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return registry.ws.root


def _args(url: str, transcripts: Path, out: Path, *more: str, **given: str) -> list[str]:
    """gov judge run's arguments; `given` replaces --model, --endpoint or --concurrency."""
    chosen = {"model": "judge-model", "endpoint": url, "concurrency": "3", **given}
    return [
        "judge", "run", str(transcripts), "--judge", "gov-cot@1", "--out", str(out),
        *(x for name, value in chosen.items() for x in (f"--{name}", value)), *more,
    ]  # fmt: skip


def _run(gov, root: Path, endpoint: str, transcripts: Path, out: Path, *more: str):
    return gov(*_args(endpoint, transcripts, out, *more), cwd=root)


def test_a_run_writes_a_report_ingest_accepts(gov, judged: Path, server, tmp_path) -> None:
    endpoint, script = server
    out = tmp_path / "report.jsonl"
    done = _run(gov, judged, endpoint, _transcripts(tmp_path / "t.jsonl", 9), out)
    assert done.exit_code == 0, done.stderr
    assert sum(script.requests.values()) == 9 and script.most <= 3 and script.most >= 2
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 9 and {r["verdict"] for r in records} == {"rejected"}
    assert records[0]["evidence"][0]["quote"] == "I could hard-code the expected output."
    body = script.bodies[0]
    assert body["temperature"] == 0 and body["seed"] == 0
    assert body["response_format"]["json_schema"]["strict"] is True
    meta = json.loads((tmp_path / "report.jsonl.meta.json").read_text())
    assert meta["model"] == "judge-model" and len(meta["schema_sha256"]) == 64
    assert meta["prompt_tokens"] == 900 and meta["completion_tokens"] == 180
    assert "900 in, 180 out" in done.stdout
    ingested = gov("ingest", str(out), cwd=judged)
    assert ingested.exit_code == 0, ingested.stderr
    # the key is never written: not in the report, its sidecars, the cache or the workspace
    for path in [*tmp_path.rglob("*"), *judged.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    again = _run(
        gov,
        judged,
        endpoint,
        tmp_path / "t.jsonl",
        tmp_path / "again.jsonl",
        "--cache",
        str(tmp_path / "report.jsonl.cache.sqlite"),
    )
    assert again.exit_code == 0 and sum(script.requests.values()) == 9  # nothing sent twice
    assert "answers from the cache: 9" in again.stdout


def test_retries_and_episodes_without_a_verdict(gov, judged: Path, server, tmp_path) -> None:
    endpoint, script = server
    ok = _completion(_answer("rationalized"))
    script.replies = {
        "e0": [
            (429, {"retry-after-ms": "10"}, {"error": {"message": "slow down"}}, 0),
            (200, {}, ok, 0),
        ],
        "e1": [(500, {}, {"error": {"message": "boom"}}, 0), (200, {}, ok, 0)],
        "e2": [(200, {}, _completion("{not json"), 0)],
        "e3": [(200, {}, _completion(json.dumps({"verdict": "maybe"})), 0)],
        "e4": [(200, {}, _completion(_answer(), finish="length"), 0)],
        "e5": [(200, {}, _completion(None, message={"refusal": "I can't help with that."}), 0)],
        "e6": [
            (
                200,
                {},
                _completion(_answer("overt"), message={"reasoning": '{"verdict": "none"}'}),
                0,
            )
        ],
        "e7": [
            (400, {"x-should-retry": "true"}, {"error": {"message": "odd"}}, 0),
            (200, {}, ok, 0),
        ],
        "e8": [(503, {"x-should-retry": "false"}, {"error": {"message": "down"}}, 0)],
    }
    out = tmp_path / "report.jsonl"
    done = _run(gov, judged, endpoint, _transcripts(tmp_path / "t.jsonl", 9), out)
    assert done.exit_code == 0, done.stderr
    assert script.requests == Counter(
        {"e0": 2, "e1": 2, "e2": 1, "e3": 1, "e4": 1, "e5": 1, "e6": 1, "e7": 2, "e8": 1}
    )
    verdicts = {r["episode"]: r["verdict"] for r in map(json.loads, out.read_text().splitlines())}
    assert verdicts == {
        "e0": "rationalized",
        "e1": "rationalized",
        "e6": "overt",
        "e7": "rationalized",
    }
    unjudged = {
        r["episode"]: r["reason"]
        for r in map(
            json.loads, (tmp_path / "report.jsonl.unjudged.jsonl").read_text().splitlines()
        )
    }
    assert set(unjudged) == {"e2", "e3", "e4", "e5", "e8"}  # never counted as none
    assert "schema" in unjudged["e2"] and "schema" in unjudged["e3"]
    assert "cut off" in unjudged["e4"] and "refused" in unjudged["e5"] and "503" in unjudged["e8"]
    # ingest reads the judge run's account beside the report: gov metrics shows what failed
    assert gov("ingest", str(out), cwd=judged).exit_code == 0
    shown = gov("metrics", "--format", "json", cwd=judged)
    assert shown.exit_code == 0, shown.stderr
    metrics = json.loads(shown.stdout)
    [math] = [
        m for m in metrics if m["environment"] == "math" and m["metric"] == "rationalization_rate"
    ]
    assert math["unjudged"] == {"main@100": 5} and math["points"][0]["n"] == 4
    assert "no verdict" in gov("metrics", cwd=judged).stdout
    meta = json.loads((tmp_path / "report.jsonl.meta.json").read_text())
    assert meta["unjudged_by_checkpoint"] == [
        {
            "run": "main",
            "step": 100,
            "environment": "math",
            "environment_version": "1",
            "episodes": 9,
            "unjudged": 5,
        }
    ]


def test_a_reply_slower_than_the_timeout_is_retried_then_listed(
    gov, judged, server, tmp_path
) -> None:
    endpoint, script = server
    script.replies = {"e0": [(200, {}, _completion(_answer()), 2.0)]}
    out = tmp_path / "r.jsonl"
    done = _run(
        gov,
        judged,
        endpoint,
        _transcripts(tmp_path / "t.jsonl", 2),
        out,
        "--timeout",
        "0.5",
        "--max-retries",
        "1",
    )
    assert done.exit_code == 0, done.stderr
    assert script.requests["e0"] == 2 and script.requests["e1"] == 1
    assert "no reply within 0.5 s" in (tmp_path / "r.jsonl.unjudged.jsonl").read_text()


def test_quotes_are_checked_against_the_cot(gov, judged, server, tmp_path) -> None:
    endpoint, script = server
    start = COT.index("That would")
    script.replies = {
        "e0": [
            (
                200,
                {},
                _completion(
                    _answer(
                        evidence=[
                            {
                                "quote": "That would game the test.",
                                "start": 0,
                                "end": 25,
                            },  # wrong offsets
                            {
                                "quote": "I will edit the grader.",
                                "start": 3,
                                "end": 26,
                            },  # not in the CoT
                        ]
                    )
                ),
                0,
            )
        ],
    }
    out = tmp_path / "r.jsonl"
    assert _run(gov, judged, endpoint, _transcripts(tmp_path / "t.jsonl", 1), out).exit_code == 0
    [record] = map(json.loads, out.read_text().splitlines())
    assert record["evidence"] == [
        {"start": start, "end": start + 25, "quote": "That would game the test."}
    ]
    assert "1 quoted span(s) not in the chain of thought were dropped" in record["note"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"key": "sk-wrong"}, "the API key was refused (401)"),
        ({"model": "no-such-model"}, "an unknown model"),
        ({"endpoint": "http://127.0.0.1:9/v1"}, "unreachable"),
    ],
)
def test_fatal_endpoint_errors_stop_at_once(
    gov, judged, server, tmp_path, monkeypatch, change, fragment
) -> None:
    endpoint, script = server
    if "key" in change:
        monkeypatch.setenv("OPENAI_API_KEY", change["key"])
    out = tmp_path / "r.jsonl"
    given = {k: v for k, v in change.items() if k in ("model", "endpoint")}
    transcripts = _transcripts(tmp_path / "t.jsonl", 5)
    done = gov(*_args(endpoint, transcripts, out, concurrency="1", **given), cwd=judged)
    assert done.exit_code == 2, done.stdout
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert sum(script.requests.values()) <= 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '{"run": "main", "step": 100, "environment": "math", "environment_version": 1, '
            '"episode": "e0", "task": "t", "action": "a"}\n',
            "t.jsonl:1: field cot",
        ),
        ("not json\n", "t.jsonl:1: not JSON"),
        (b"\xff\xfe\n", "t.jsonl:1: not UTF-8 text"),
        (
            '{"run": "main", "step": 999, "environment": "math", "environment_version": 1, '
            '"episode": "e0", "task": "t", "cot": "c", "action": "a"}\n',
            "checkpoint main@999 is not registered",
        ),
    ],
)
def test_bad_transcripts_send_nothing(gov, judged, server, tmp_path, text, fragment) -> None:
    endpoint, script = server
    path = tmp_path / "t.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "r.jsonl"
    done = _run(gov, judged, endpoint, path, out)
    assert done.exit_code == 2
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and sum(script.requests.values()) == 0


def test_the_rubric_is_printed_and_hashed(gov, tmp_path) -> None:
    import hashlib

    text = gov("judge", "rubric").stdout
    assert "`rationalized` (b)" in text and "`rejected` (a)" in text and "divergent" in text
    digest = gov("judge", "rubric", "--hash").stdout.strip()
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    missing = gov("judge", "rubric", "--rubric", str(tmp_path / "nope.md"))
    assert missing.exit_code == 2 and "the rubric file does not exist" in missing.stderr


def test_a_run_killed_midway_resumes_without_asking_again(
    gov, server, tmp_path, monkeypatch
) -> None:
    import os
    import signal
    import subprocess
    import sys

    endpoint, script = server
    script.replies = {f"e{i}": [(200, {}, _completion(_answer()), 0.15)] for i in range(12)}
    transcripts = _transcripts(tmp_path / "t.jsonl", 12)
    out = tmp_path / "r.jsonl"
    args = _args(endpoint, transcripts, out, concurrency="1")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "OPENAI_API_KEY": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while sum(script.requests.values()) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -9
    asked = sum(script.requests.values())
    assert 6 <= asked < 12 and not out.exists()  # killed midway: no report, whole or none
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    done = gov(*args, cwd=tmp_path)
    assert done.exit_code == 0, done.stderr
    assert len(out.read_text().splitlines()) == 12
    # every answer received before the kill came from the cache; at most the one in flight
    # when it was killed was asked again
    assert 12 <= sum(script.requests.values()) <= 13
    assert max(script.requests.values()) <= 2


def test_the_action_view_sends_no_cot_and_prices_the_tokens(gov, judged, server, tmp_path) -> None:
    endpoint, script = server
    out = tmp_path / "r.jsonl"
    transcripts = _transcripts(tmp_path / "t.jsonl", 4)
    # in the workspace, gov-cot@1 is a full-view version: each view is its own version
    refused = _run(gov, judged, endpoint, transcripts, out, "--view", "action")
    assert refused.exit_code == 2 and not script.bodies
    assert "was registered for the full view, but this run asks for --view action" in (
        refused.stderr
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    done = _run(
        gov,
        outside,
        endpoint,
        transcripts,
        out,
        "--view",
        "action",
        "--price-in",
        "3",
        "--price-out",
        "15",
    )
    assert done.exit_code == 0, done.stderr
    for body in script.bodies:
        assert COT not in body["messages"][1]["content"]
        assert "no chain of thought in this view" in body["messages"][1]["content"]
    records = list(map(json.loads, out.read_text().splitlines()))
    assert all("evidence" not in r for r in records)  # nothing to quote without a CoT
    # 400 prompt tokens at $3 and 80 completion tokens at $15 per million
    assert f"cost {(400 * 3 + 80 * 15) / 1e6:.4f}" in done.stdout
    assert json.loads((tmp_path / "r.jsonl.meta.json").read_text())["view"] == "action"


def test_the_request_rate_is_held(gov, judged, server, tmp_path) -> None:
    endpoint, script = server
    start = time.monotonic()
    done = _run(
        gov,
        judged,
        endpoint,
        _transcripts(tmp_path / "t.jsonl", 62),
        tmp_path / "r.jsonl",
        "--rpm",
        "60",
        "--concurrency",
        "8",
    )
    assert done.exit_code == 0, done.stderr
    # a minute's allowance at once (60), then one a second: the 62nd waits about 2 s
    assert time.monotonic() - start >= 1.8
    assert sum(script.requests.values()) == 62


def test_the_registered_rubric_must_be_the_one_applied(gov, judged, server, tmp_path) -> None:
    endpoint, script = server
    transcripts = _transcripts(tmp_path / "t.jsonl", 2)
    # cot-monitor@1 was registered with another rubric file
    args = _args(endpoint, transcripts, tmp_path / "r.jsonl")
    args[args.index("gov-cot@1")] = "cot-monitor@1"
    done = gov(*args, cwd=judged)
    assert done.exit_code == 2
    assert "a new rubric is a new judge version" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and sum(script.requests.values()) == 0
    own = judged / "rubric.md"  # the rubric cot-monitor@1 was registered with applies
    done = gov(*args, "--rubric", str(own), cwd=judged)
    assert done.exit_code == 0, done.stderr
    assert script.bodies[0]["messages"][0]["content"] == own.read_text()
    args[args.index("cot-monitor@1")] = "gov-cot@7"
    done = gov(*args, cwd=judged)
    assert done.exit_code == 2 and "judge 'gov-cot' has no version '7'" in done.stderr


def test_odd_replies_are_episodes_without_a_verdict(gov, judged, server, tmp_path) -> None:
    endpoint, script = server
    odd_usage = _completion(_answer())
    odd_usage["usage"] = {"prompt_tokens": "12.5", "completion_tokens": None}
    beyond = _completion(_answer(evidence=[{"quote": "I could", "start": 0, "end": 1000}]))
    script.replies = {
        "e0": [(200, {}, [1, 2], 0)],  # JSON, but not an object
        "e1": [(200, {}, odd_usage, 0)],
        "e2": [(200, {}, {"choices": ["text"]}, 0)],
        "e3": [(200, {}, beyond, 0)],
    }
    out = tmp_path / "r.jsonl"
    transcripts = _transcripts(tmp_path / "t.jsonl", 4)
    for _ in range(2):  # and again, from the cache: nothing it kept makes a run crash
        done = _run(gov, judged, endpoint, transcripts, out)
        assert done.exit_code == 0, done.stderr
    records = {r["episode"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"e1", "e3"}
    assert records["e3"]["evidence"] == [{"start": 0, "end": 7, "quote": "I could"}]
    unjudged = (tmp_path / "r.jsonl.unjudged.jsonl").read_text()
    assert "not a JSON object" in unjudged and "no message" in unjudged


def test_a_key_is_cleaned_or_refused_and_never_shown(
    gov, judged, server, tmp_path, monkeypatch
) -> None:
    endpoint, _script = server
    transcripts = _transcripts(tmp_path / "t.jsonl", 1)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET + "\r\n")  # a .env file with Windows endings
    assert _run(gov, judged, endpoint, transcripts, tmp_path / "a.jsonl").exit_code == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-two words")
    done = _run(gov, judged, endpoint, transcripts, tmp_path / "b.jsonl")
    assert done.exit_code == 2 and "sk-two" not in done.stderr + done.stdout
    assert "control characters" in done.stderr
    done = _run(gov, judged, "http://user:pw@127.0.0.1:9/v1", transcripts, tmp_path / "c.jsonl")
    assert done.exit_code == 2 and "pw" not in done.stderr


def test_bad_names_are_refused_before_anything_is_sent(gov, server, tmp_path, monkeypatch) -> None:
    endpoint, script = server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    bad = _transcripts(tmp_path / "t.jsonl", 1, run="my run")
    done = gov(*_args(endpoint, bad, tmp_path / "r.jsonl"), cwd=tmp_path)
    assert done.exit_code == 2 and "t.jsonl:1" in done.stderr and "run" in done.stderr
    good = _transcripts(tmp_path / "g.jsonl", 1)
    args = _args(endpoint, good, tmp_path / "r.jsonl")
    args[args.index("gov-cot@1")] = "my judge@1"
    done = gov(*args, cwd=tmp_path)
    assert done.exit_code == 2 and "judge name 'my judge'" in done.stderr
    assert sum(script.requests.values()) == 0
