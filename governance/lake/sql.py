"""The one SQL of `gov aggregate`: the per-row checks, the duplicate and conflict check and the
counts, written once in the subset of SQL that DuckDB and Spark both speak. It is kept in
DuckDB's dialect (DuckDB runs it as it is) and translated for Spark by sqlglot
(`for_engine`); a test runs both on the same lakes.

Each engine first shows the lake as a view `episodes` of the same columns and types (see
`engines`): file (the engine's name for the file), file_row (0-based), run (a string) and step
(a BIGINT) of the file's partition, episode, environment, environment_version, judge_version
(strings), judge, verdict, divergent (a boolean), confidence (a double), evidence (a list of
{start, end, quote}) and schema_version. The listing has already checked that every path ends
in run=RUN/step=STEP/FILE; each engine's reader takes run and step from there
(`partition_from`).
"""

from __future__ import annotations

import functools
import re

from ..judgments import VERDICTS

_PARTITION = r"'/run=([^/]+)/step=([0-9]+)/[^/]+$'"


def partition_from(path: str) -> tuple[str, str]:
    """The columns run and step of a file's partition, read from its path (the column `path`)
    where a reader does not take them from the folders itself."""
    return (
        f"regexp_extract({path}, {_PARTITION}, 1) AS run",
        f"CAST(regexp_extract({path}, {_PARTITION}, 2) AS BIGINT) AS step",
    )


_VERDICTS = ", ".join(f"'{v}'" for v in VERDICTS)
# A judgment as one small integer, 2 x the verdict's place in VERDICTS + divergent: the
# per-episode GROUP BY (the costly part) then carries two integers, not two strings and two
# booleans (a quarter less time on DuckDB). `judgment` below reads it back.
_JUDGMENT = (
    "CASE verdict "
    + " ".join(f"WHEN '{v}' THEN {2 * i}" for i, v in enumerate(VERDICTS))
    + " END + CAST(divergent AS INT)"
)

# A row passes only if the pydantic model would take it too (the error path asks the model
# itself, and a disagreement is a bug): the key fields are checked once per distinct value, in
# Python, with the model's own types; the file schema has fixed every column's type; what is
# left is per row.
_ROWS = f"""
SELECT file, file_row, run, step, environment, environment_version, judge, judge_version,
       episode, verdict, divergent, confidence, evidence, schema_version,
       CASE
         WHEN schema_version IS NOT NULL AND schema_version <> 1 THEN 'schema_version'
         WHEN episode IS NULL OR episode = '' THEN 'episode'
         WHEN verdict IS NULL OR verdict NOT IN ({_VERDICTS}) THEN 'verdict'
         WHEN divergent IS NULL THEN 'divergent'
         WHEN confidence IS NOT NULL AND NOT (confidence >= 0 AND confidence <= 1)
           THEN 'confidence'
         WHEN evidence IS NOT NULL AND array_length(list_filter(evidence, lambda x: x IS NULL
              OR x.start IS NULL OR x."end" IS NULL OR x.quote IS NULL OR x.start < 0
              OR x."end" <= x.start)) > 0 THEN 'evidence'
       END AS problem,
       {_JUDGMENT} AS judgment
FROM episodes
"""

_KEY = "run, step, environment, environment_version, judge, judge_version"
_EPISODE_HASH = f"hash({_KEY}, episode)"  # REPEATED lists these, REPEATS filters by them
_CONFLICTED = "min(judgment) <> max(judgment)"

# Each row with `k`, a 64-bit hash of its episode's key: rows of one episode share it.
_JUDGED = f"""
SELECT *, {_EPISODE_HASH} AS k FROM ({_ROWS})
"""

# The counts: rows by key and judgment (a few thousand groups), `bad` of them with a per-row
# problem.
COUNTS = f"""
SELECT {_KEY}, judgment, count(*) AS records, count(problem) AS bad
FROM ({_ROWS})
GROUP BY {_KEY}, judgment
"""

# The duplicate check's first pass: the episode hashes seen more than once. Grouping by one
# integer instead of seven columns is what makes it cheap (the costly part: one group per
# episode); a hash shared by rows of different episodes (two keys that collide) is harmless,
# because REPEATS then checks the candidates by their keys. Apart from COUNTS, not grouped with
# it by GROUPING SETS: on DuckDB the two queries together take two thirds of the time.
REPEATED = f"""
SELECT k FROM (SELECT {_EPISODE_HASH} AS k FROM episodes) GROUP BY k HAVING count(*) > 1
"""

# The episodes listed more than once, by their keys: among the rows whose hash REPEATED saw more
# than once (`{{where}}`: WHERE k IN (...); left empty, every episode is checked, for a lake of
# very many repeats). An episode judged the same way each time counts once; one judged two ways
# is `conflicted`.
REPEATS = f"""
WITH judged AS ({_JUDGED})
SELECT {_KEY}, episode, min(judgment) AS judgment, count(*) AS copies,
       CASE WHEN {_CONFLICTED} THEN 1 ELSE 0 END AS conflicted
FROM judged {{where}}
GROUP BY {_KEY}, episode
HAVING count(*) > 1
"""


def judgment(code: int) -> tuple[str, bool]:
    """The verdict and divergent flag of a `judgment` code."""
    return VERDICTS[code // 2], bool(code % 2)


# Only when COUNTS found something wrong: per file and key, the rows with a per-row problem
# and the rows of episodes judged two ways, so that the first bad rows can be named in the
# lake's own order (by file, then row), which the engines' names for files do not sort by.
_WITH_CONFLICTS = f"""
WITH judged AS ({_JUDGED}),
conflicted AS (
  SELECT {_KEY}, episode FROM judged GROUP BY {_KEY}, episode HAVING {_CONFLICTED}
),
flagged AS (
  SELECT j.*, c.episode IS NOT NULL AS conflicting
  FROM judged AS j LEFT JOIN conflicted AS c
    ON j.run = c.run AND j.step = c.step AND j.environment = c.environment
       AND j.environment_version = c.environment_version AND j.judge = c.judge
       AND j.judge_version = c.judge_version AND j.episode = c.episode
)
"""

BAD_BY_FILE = f"""{_WITH_CONFLICTS}
SELECT file, {_KEY}, count(*) AS records, count(problem) AS bad,
       sum(CASE WHEN conflicting THEN 1 ELSE 0 END) AS conflicting
FROM flagged
GROUP BY file, {_KEY}
"""

# The rows of one file (a parameter), in order, with what the model needs to name a problem.
ROWS_OF_FILE = f"""{_WITH_CONFLICTS}
SELECT file_row, {_KEY}, episode, verdict, divergent, confidence, evidence, schema_version,
       problem, conflicting
FROM flagged
WHERE file = ?
ORDER BY file_row
"""


@functools.lru_cache(maxsize=64)
def for_engine(sql: str, engine: str) -> str:
    """The SQL as `engine` runs it: DuckDB's as written, Spark's translated by sqlglot.

    One word is not translated but chosen: `hash` is DuckDB's 64-bit hash, and sqlglot
    keeps the name, which on Spark is a 32-bit hash (thousands of collisions in ten million
    episodes, each a candidate REPEATS must check). Spark's 64-bit hash is xxhash64."""
    if engine == "duckdb":
        return sql
    import sqlglot

    translated = str(sqlglot.transpile(sql, read="duckdb", write="spark")[0])
    return re.sub(r"\bHASH\(", "XXHASH64(", translated)
