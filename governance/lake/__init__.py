"""Judged episodes kept as a Parquet lake (folders run=RUN/step=STEP/*.parquet), checked as
strictly as `gov ingest` checks a report and counted by one SQL that DuckDB runs in this
process and Spark runs on a cluster: `gov aggregate` writes the counts `gov ingest` takes,
with a manifest naming every file it counted by size and md5.

`listing` finds the files and checks their schemas, `sql` is the one SQL, `engines` runs it
on DuckDB or Spark, `aggregate` judges what came back and writes the counts."""

from __future__ import annotations

from .aggregate import Aggregated, aggregate, manifest_path

__all__ = ["Aggregated", "aggregate", "manifest_path"]
