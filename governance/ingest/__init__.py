"""Ingesting divergence reports: validate a whole file, join it with the registry, count, keep it.

A report is read once by DuckDB, which writes a compact per-episode table (Parquet) of the raw
JSON text of every key field. The distinct key values (a few thousand at most) are then validated
in Python with the very pydantic types of `governance.judgments` and joined with the registry;
the per-row fields (episode, confidence, evidence, note) are checked in SQL by rules as strict as
those types. Only when something is wrong is the file read again, line by line with pydantic, to
name the file:line, field and reason of the first bad records. Nothing is stored until every file
passed.

What is kept, in one registry change: the report file itself, content-addressed and tracked by
DVC (`reports/<md5>.<ext>`), and through the count store (`governance.counts`) a ledger line and
the counts it adds per (run, checkpoint, environment version, judge version). The per-episode
table stays in `.gov/index/` for later conflict checks.
"""

from __future__ import annotations

from .pipeline import IngestResult, ingest

__all__ = ["IngestResult", "ingest"]
