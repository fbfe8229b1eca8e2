"""The two engines that run the lake's SQL: DuckDB in this process (the default) and Spark
through pyspark (a local session, or a cluster's with `master`, or the one spark-submit made).

Each shows the lake's files as the same view `episodes` (`sql`'s docstring names its columns
and types), runs a query of `sql` as written for it, and hands rows back as plain Python
values (lists and dicts for evidence). Nothing else differs between them: the checks and the
counts are the one SQL, and what the rows mean is decided by `aggregate`, once."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from ..errors import GovError
from ..storage import duckdb_connect
from .listing import OPTIONAL, Lake
from .sql import for_engine, partition_from

ENGINES = ("duckdb", "spark")

# Every engine casts to these, so that a string episode in one file and an integer one in
# another (both allowed) meet as one column; the integer columns become their decimal digits.
_CASTS = {
    "environment": "VARCHAR",
    "environment_version": "VARCHAR",
    "judge": "VARCHAR",
    "judge_version": "VARCHAR",
    "episode": "VARCHAR",
    "verdict": "VARCHAR",
    "divergent": "BOOLEAN",
    "confidence": "DOUBLE",
    "evidence": 'STRUCT(start BIGINT, "end" BIGINT, quote VARCHAR)[]',
    "schema_version": "BIGINT",
}
_SPARK_TYPES = {
    "VARCHAR": "STRING",
    "BOOLEAN": "BOOLEAN",
    "DOUBLE": "DOUBLE",
    "BIGINT": "BIGINT",
    _CASTS["evidence"]: "ARRAY<STRUCT<start: BIGINT, `end`: BIGINT, quote: STRING>>",
}


class Engine(Protocol):
    name: str

    @property
    def local(self) -> bool:
        """Whether it runs on this machine (and reads its files)."""

    def load(self, lake: Lake) -> None:
        """Show the lake's files as the view `episodes`."""

    def rows(self, sql: str, params: list[Any] | None = None) -> Iterator[tuple[Any, ...]]:
        """The rows of one of `sql`'s queries (DuckDB's text; the engine translates it)."""

    def file_of(self, name: str) -> str:
        """The path a `file` value of this engine names (as the listing has it)."""

    def close(self) -> None: ...


def start(engine: str, master: str | None) -> Engine:
    if engine == "duckdb":
        if master is not None:
            raise GovError("--master is Spark's: DuckDB runs in this process")
        return DuckDBEngine()
    if engine == "spark":
        return SparkEngine(master)
    raise GovError(f"no engine {engine!r}: one of {', '.join(ENGINES)}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DuckDBEngine:
    """DuckDB in this process; it spills to a temporary folder rather than exceed its memory
    limit (a lake's episode keys may not fit in memory)."""

    name = "duckdb"
    local = True

    def __init__(self) -> None:
        self.spill = Path(tempfile.mkdtemp(prefix="gov-aggregate-"))
        self.con = duckdb_connect({"memory_limit": "1GB", "temp_directory": str(self.spill)})
        self.con.execute("SET preserve_insertion_order = false")

    def load(self, lake: Lake) -> None:
        files = "[" + ", ".join(_quote(str(f.path)) for f in lake.files) + "]"
        cols = ", ".join(
            f'CAST("{c}" AS {t}) AS "{c}"'
            if c not in OPTIONAL or lake.present(c)
            else f'CAST(NULL AS {t}) AS "{c}"'
            for c, t in _CASTS.items()
        )
        # DuckDB's hive partitioning gives a file's run and step once per file, not a regular
        # expression per row (a third of the checks' time). It reads every NAME=VALUE folder of
        # the path, so where one above the lake could shadow a column, the expression it is.
        if any("=" in part for part in lake.root.absolute().parts):
            partition = ", ".join(partition_from("filename"))
            hive = "hive_partitioning = false"
        else:
            partition = "run, step"
            hive = "hive_partitioning = true, hive_types = {'run': VARCHAR, 'step': BIGINT}"
        self.con.execute(
            f"CREATE TEMP VIEW episodes AS SELECT filename AS file, file_row_number AS file_row, "
            f"{partition}, {cols} FROM read_parquet({files}, filename = true, "
            f"file_row_number = true, union_by_name = true, {hive})"
        )

    def rows(self, sql: str, params: list[Any] | None = None) -> Iterator[tuple[Any, ...]]:
        try:
            cursor = self.con.execute(for_engine(sql, self.name), params or [])
            while batch := cursor.fetchmany(10_000):
                yield from batch
        except Exception as exc:  # duckdb.Error: a file damaged past its footer, one changed
            detail = " ".join(str(exc).split())[:300]
            raise GovError(f"the DuckDB engine failed reading the lake: {detail}") from None

    def file_of(self, name: str) -> str:
        return name

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.spill, ignore_errors=True)


class SparkEngine:
    """A Spark session through pyspark: the one already running (spark-submit's, or a test's),
    else a new one on `master` (default `local[*]`), stopped again when done."""

    name = "spark"

    def __init__(self, master: str | None) -> None:
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise GovError(
                "--engine spark needs pyspark and sqlglot: python3 -m pip install 'rl-gov[spark]'"
            ) from None
        active = SparkSession.getActiveSession()
        self.owned = active is None
        if active is not None:
            if master is not None and active.sparkContext.master != master:
                raise GovError(
                    f"a Spark session on {active.sparkContext.master} is already running "
                    f"here; --master {master} cannot start another"
                )
            self.spark = active
            return
        if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
            raise GovError(
                "the Spark engine cannot start: no Java here (java is not on PATH and "
                "JAVA_HOME is unset); install a JDK 17, e.g. apt-get install "
                "openjdk-17-jre-headless, or use --engine duckdb"
            )
        builder = (
            SparkSession.builder.appName("gov aggregate")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
        )
        # Under spark-submit the JVM is already up (its gateway port is set) and its master is
        # spark-submit's --master: only a master given here overrides it.
        if master is not None or not os.environ.get("PYSPARK_GATEWAY_PORT"):
            builder = builder.master(master or "local[*]")
        # The JVM writes its start-up warnings and, on a failed query, pages of log and stack to
        # the stderr it inherits: it inherits a log file instead, and gov's output stays one line
        # (the file is named in a failure's message).
        self.log = Path(tempfile.mkstemp(prefix="gov-spark-", suffix=".log")[1])
        saved = os.dup(2)
        try:
            with self.log.open("ab") as log:
                os.dup2(log.fileno(), 2)
                try:
                    self.spark = builder.getOrCreate()
                finally:
                    os.dup2(saved, 2)
        except Exception as exc:  # Java that will not start, a master that cannot be reached
            detail = " ".join(str(exc).split())[:200]
            raise GovError(
                f"the Spark engine cannot start: {detail} (Spark's log: {self.log})"
            ) from None
        finally:
            os.close(saved)
        self.spark.sparkContext.setLogLevel("ERROR")

    @property
    def local(self) -> bool:
        return str(self.spark.sparkContext.master).startswith("local")

    def load(self, lake: Lake) -> None:
        from functools import reduce

        frames = []
        try:
            for group in lake.schema_groups():
                present = lake.columns[group[0].rel]
                frame = self.spark.read.parquet(*(str(f.path) for f in group))
                exprs = [
                    "_metadata.file_path AS file",
                    "_metadata.row_index AS file_row",
                    *partition_from("_metadata.file_path"),
                ]
                for column, duck in _CASTS.items():
                    spark_type = _SPARK_TYPES[duck]
                    source = f"`{column}`" if column in present else "NULL"
                    exprs.append(f"CAST({source} AS {spark_type}) AS `{column}`")
                frames.append(frame.selectExpr(*exprs))
            reduce(lambda a, b: a.unionByName(b), frames).createOrReplaceTempView("episodes")
        except Exception as exc:  # Spark's AnalysisException: a file it cannot plan a read of
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
            raise GovError(
                f"the Spark engine cannot read the lake: {first}{self._see_log()}"
            ) from None

    def rows(self, sql: str, params: list[Any] | None = None) -> Iterator[tuple[Any, ...]]:
        # collect, not toLocalIterator (a job per partition): the counts are small, and the
        # error path asks for one file's rows at a time
        try:
            rows = self.spark.sql(for_engine(sql, self.name), args=params or None).collect()
        except Exception as exc:  # a lost executor, a file gone from the shared file system
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
            raise GovError(f"the Spark engine failed: {first}{self._see_log()}") from exc
        for row in rows:
            yield tuple(_plain(v) for v in row)

    def _see_log(self) -> str:
        log: Path | None = getattr(self, "log", None)
        self.keep_log = True  # a failure's log is kept for the user to read
        return f" (Spark's log: {log})" if log is not None else ""

    def file_of(self, name: str) -> str:
        # Spark names a file by its URI (file:/tmp/lake/run%3D...): the path, decoded.
        return unquote(urlparse(name).path)

    def close(self) -> None:
        self.spark.catalog.dropTempView("episodes")
        if self.owned:
            self.spark.stop()
        log: Path | None = getattr(self, "log", None)
        if log is not None and not getattr(self, "keep_log", False):
            log.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    """A Spark value as DuckDB would hand it: Rows as dicts, arrays as lists."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    as_dict = getattr(value, "asDict", None)
    if as_dict is not None:
        return {k: _plain(v) for k, v in as_dict().items()}
    return value
