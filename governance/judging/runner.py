"""`gov judge run`: transcripts in, an episode-level divergence report out.

Each transcript (the episode keys of a report, plus `task`, `cot` and `action`) is put to the
model with the rubric as the system message and a strict JSON-schema response format, at a
pinned temperature and seed. Replies are cached by the exact request (SQLite, committed reply by
reply), so a second run sends nothing and a run killed at any moment resumes without asking
again. The report is written whole or not at all; episodes the judge gave no verdict for are
listed beside it with the reason, never counted as `none`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from ..errors import GovError
from ..ingest.formats import UNJUDGED_SUFFIX, lines, sniff, validation_message
from ..judgments import JudgedEpisode
from ..models import Name
from ..storage import atomic_write
from .answer import Judged, View, messages, read
from .client import ChatClient
from .rubric import ANSWER_SCHEMA, Rubric, schema_sha256


class Transcript(BaseModel):
    """One episode to judge: the keys of a report's record, and what the model saw and did."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run: Name
    step: Annotated[StrictInt, Field(ge=0)]
    environment: Name
    environment_version: Annotated[StrictInt, Field(ge=1)] | Annotated[str, Field(min_length=1)]
    episode: Annotated[str, Field(min_length=1)] | StrictInt
    task: str
    cot: str
    action: str


@dataclass(frozen=True)
class Settings:
    judge: str
    version: str
    model: str
    view: View = "full"
    temperature: float = 0.0
    seed: int = 0
    max_tokens: int | None = None
    concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    price_in: float | None = None  # per million prompt tokens
    price_out: float | None = None


@dataclass
class Outcome:
    """What a judge run did."""

    report: Path
    unjudged_path: Path
    judged: int = 0
    unjudged: int = 0
    sent: int = 0  # requests sent (cache misses, retries included)
    cached: int = 0  # answers taken from the cache
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    dropped_quotes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def read_transcripts(paths: Sequence[Path]) -> list[Transcript]:
    """Every transcript of the files (JSONL or gzip JSONL), validated before anything is sent:
    one line naming the file, line and field of the first bad one."""
    found: list[Transcript] = []
    seen: dict[tuple[Any, ...], str] = {}
    for path in paths:
        fmt = sniff(path)
        if fmt == "parquet":
            raise GovError(f"{path}: transcripts are JSONL (or gzip JSONL), not Parquet")
        for number, raw in lines(path, fmt):
            where = f"{path}:{number}"
            if raw is None:
                raise GovError(f"{where}: the line is too long")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise GovError(f"{where}: not UTF-8 text") from None
            try:
                record = json.loads(text)
            except ValueError:
                raise GovError(f"{where}: not JSON") from None
            if not isinstance(record, dict):
                raise GovError(f"{where}: a transcript is a JSON object")
            try:
                transcript = Transcript.model_validate(record)
            except ValidationError as exc:
                raise GovError(f"{where}: {validation_message(exc)}") from None
            key = _key(transcript)
            if key in seen:
                raise GovError(
                    f"{where}: episode {transcript.episode!r} again (first at {seen[key]})"
                )
            seen[key] = where
            found.append(transcript)
    if not found:
        raise GovError(f"{', '.join(map(str, paths))}: no transcripts")
    return found


def _key(t: Transcript) -> tuple[Any, ...]:
    return (t.run, t.step, t.environment, str(t.environment_version), str(t.episode))


def request_body(t: Transcript, rubric: Rubric, settings: Settings) -> dict[str, Any]:
    """The exact chat-completions request for one transcript (what the cache is keyed by)."""
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": messages(rubric, t.task, t.cot, t.action, settings.view),
        "temperature": settings.temperature,
        "seed": settings.seed,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "gov_verdict", "strict": True, "schema": ANSWER_SCHEMA},
        },
    }
    if settings.max_tokens is not None:
        body["max_tokens"] = settings.max_tokens
    return body


class Cache:
    """Replies by the sha256 of the exact request, committed one by one (a kill loses at most the
    requests in flight)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # a killed process loses no committed reply in WAL mode; only a power cut could
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, body TEXT)")
        self._lock = threading.Lock()

    @staticmethod
    def key(endpoint: str, body: dict[str, Any]) -> str:
        text = json.dumps([endpoint, body], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM replies WHERE key = ?", (key,)).fetchone()
        try:
            found = json.loads(row[0]) if row is not None else None
        except ValueError:
            return None  # a damaged row is a miss: asked again
        return found if isinstance(found, dict) else None

    def put(self, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, json.dumps(body))
            )

    def close(self) -> None:
        self._db.close()


class Limiter:
    """Requests and tokens per minute, as token buckets refilled continuously (a burst of up to a
    minute's allowance, then the steady rate)."""

    def __init__(self, requests: float | None, tokens: float | None) -> None:
        self._rates = (requests, tokens)
        self._level = [requests or 0.0, tokens or 0.0]
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, tokens: int, stop: threading.Event) -> bool:
        """Wait for a request's share of both buckets; False if `stop` is set meanwhile."""
        while not stop.is_set():
            with self._lock:
                now = time.monotonic()
                for i, rate in enumerate(self._rates):
                    if rate:
                        self._level[i] = min(rate, self._level[i] + (now - self._stamp) * rate / 60)
                self._stamp = now
                need = (1.0, float(tokens))
                short = [
                    (need[i] - self._level[i]) * 60 / rate
                    for i, rate in enumerate(self._rates)
                    if rate and self._level[i] < min(need[i], rate)
                ]
                if not short:
                    for i, rate in enumerate(self._rates):
                        if rate:
                            self._level[i] -= need[i]
                    return True
            stop.wait(min(max(short), 1.0))
        return False


def run(
    transcripts: Sequence[Transcript],
    rubric: Rubric,
    settings: Settings,
    client: ChatClient,
    cache: Cache,
    out: Path,
    progress: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Judge every transcript; write the report (whole or not at all), the list of unjudged
    episodes beside it, and the run's settings (`.meta.json`)."""
    outcome = Outcome(out, out.with_name(out.name + UNJUDGED_SUFFIX))
    limiter = Limiter(settings.requests_per_minute, settings.tokens_per_minute)
    lock = threading.Lock()
    results: list[tuple[JudgedEpisode | None, str | None, int]] = [
        (None, None, 0) for _ in transcripts
    ]

    stop = threading.Event()  # a fatal endpoint error: send nothing more

    def one(index: int) -> None:
        if stop.is_set():
            return
        t = transcripts[index]
        body = request_body(t, rubric, settings)
        key = Cache.key(client.endpoint, body)
        reply = cache.get(key)
        fresh = reply is None
        if reply is None:
            if not limiter.acquire(_estimate(body), stop):
                return
            try:
                answered = client.complete(body)
            except GovError:
                stop.set()
                raise
            with lock:
                outcome.sent += answered.attempts
            if answered.body is None:
                _done(index, (None, answered.failure or "no reply", 0))
                return
            reply = answered.body
            cache.put(key, reply)
        try:
            verdict = _verdict(t, reply, settings)
        except (ValidationError, ValueError, TypeError) as exc:  # a reply gov cannot read
            verdict = (None, f"the reply could not be read ({exc.__class__.__name__})", 0)
        usage = reply.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        with lock:
            if not fresh:
                outcome.cached += 1
            outcome.prompt_tokens += _tokens(usage.get("prompt_tokens"))
            outcome.completion_tokens += _tokens(usage.get("completion_tokens"))
        _done(index, verdict)

    def _done(index: int, result: tuple[JudgedEpisode | None, str | None, int]) -> None:
        results[index] = result
        with lock:
            if result[0] is not None:
                outcome.judged += 1
            else:
                outcome.unjudged += 1
            if progress is not None:
                progress(outcome)

    with ThreadPoolExecutor(max_workers=max(1, settings.concurrency)) as pool:
        futures = [pool.submit(one, i) for i in range(len(transcripts))]
        try:
            for future in futures:
                future.result()  # an EndpointError stops the run here, with nothing written
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    report_lines, unjudged_lines = [], []
    outcome.judged = outcome.unjudged = 0
    for t, (episode, why, dropped) in zip(transcripts, results, strict=True):
        outcome.dropped_quotes += dropped
        if episode is not None:
            outcome.judged += 1
            report_lines.append(episode.model_dump_json(exclude_none=True))
        else:
            outcome.unjudged += 1
            outcome.reasons[why or "no verdict"] += 1
            unjudged_lines.append(json.dumps({**_keys(t, settings), "reason": why}))
    if not report_lines:
        raise GovError(f"no episode got a verdict ({_reasons(outcome.reasons)}): no report written")
    if settings.price_in is not None or settings.price_out is not None:
        outcome.cost = (
            outcome.prompt_tokens * (settings.price_in or 0)
            + outcome.completion_tokens * (settings.price_out or 0)
        ) / 1e6
    atomic_write(outcome.unjudged_path, "".join(line + "\n" for line in unjudged_lines).encode())
    meta = {
        "judge": settings.judge,
        "judge_version": settings.version,
        "model": settings.model,
        "endpoint": client.endpoint,
        "view": settings.view,
        "temperature": settings.temperature,
        "seed": settings.seed,
        "rubric_sha256": rubric.sha256,
        "schema_sha256": schema_sha256(),
        "episodes": len(transcripts),
        "judged": outcome.judged,
        "unjudged": outcome.unjudged,
        "unjudged_by_checkpoint": _unjudged_counts(transcripts, results),
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
    }
    atomic_write(out.with_name(out.name + ".meta.json"), json.dumps(meta, indent=2).encode())
    atomic_write(out, "".join(line + "\n" for line in report_lines).encode())
    return outcome


def _keys(t: Transcript, settings: Settings) -> dict[str, Any]:
    return {
        "run": t.run,
        "step": t.step,
        "environment": t.environment,
        "environment_version": t.environment_version,
        "episode": t.episode,
        "judge": settings.judge,
        "judge_version": settings.version,
    }


def _verdict(
    t: Transcript, reply: dict[str, Any], settings: Settings
) -> tuple[JudgedEpisode | None, str | None, int]:
    """The episode's judged record from a reply, or why there is none; and how many quotes were
    dropped (not in the CoT)."""
    try:
        choice = reply["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        return None, "the reply has no message", 0
    if not isinstance(message, dict) or not isinstance(choice, dict):
        return None, "the reply has no message", 0
    if message.get("refusal"):
        return None, "the model refused", 0
    if choice.get("finish_reason") == "length":
        return None, "the answer was cut off (finish_reason length)", 0
    # the answer is the content; a reasoning model's reasoning field is not
    judged = read(message.get("content"), t.cot, settings.view)
    if not isinstance(judged, Judged):
        return None, judged, 0
    episode = JudgedEpisode.model_validate(
        {
            **_keys(t, settings),
            "verdict": judged.verdict,
            "divergent": judged.divergent,
            "confidence": judged.confidence,
            "evidence": [e.model_dump() for e in judged.evidence] or None,
            "note": judged.note,
        }
    )
    return episode, None, judged.dropped


def _tokens(value: Any) -> int:
    """A usage count as the server gave it, if it is one (anything else counts 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


def _estimate(body: dict[str, Any]) -> int:
    """A request's tokens, roughly (four characters each), for the tokens-per-minute limit."""
    return sum(len(m["content"]) for m in body["messages"]) // 4 + (body.get("max_tokens") or 256)


def _unjudged_counts(
    transcripts: Sequence[Transcript], results: Sequence[tuple[Any, str | None, int]]
) -> list[dict[str, Any]]:
    counts: Counter[tuple[Any, ...]] = Counter()
    totals: Counter[tuple[Any, ...]] = Counter()
    for t, (episode, _, _) in zip(transcripts, results, strict=True):
        key = (t.run, t.step, t.environment, str(t.environment_version))
        totals[key] += 1
        counts[key] += episode is None
    return [
        {
            "run": k[0],
            "step": k[1],
            "environment": k[2],
            "environment_version": k[3],
            "episodes": totals[k],
            "unjudged": counts[k],
        }
        for k in sorted(totals)
        if counts[k]
    ]


def _reasons(reasons: Counter[str]) -> str:
    return "; ".join(f"{n} x {why}" for why, n in reasons.most_common(3)) or "none sent"
