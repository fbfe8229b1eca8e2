"""The `gov` command: parse the arguments, call one library function, format what it returns.

Installed as `governance.cli` (see pyproject.toml); every command has a Python twin in `governance`.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Table

from governance import __version__
from governance.errors import GovError
from governance.example import ExampleResult, build_example
from governance.ingest import ingest as ingest_reports
from governance.metrics import METRICS, wilson
from governance.metrics import series as metric_series
from governance.models import Checkpoint, CheckpointStatus, Environment, Judge, Run
from governance.registry import (
    Registry,
    acknowledge_flag,
    get_flag,
    list_flags,
    open_registry,
    parse_checkpoint_ref,
)
from governance.reports import report_json_schema
from governance.storage import atomic_write
from governance.workspace import init as init_workspace

if TYPE_CHECKING:
    from governance.check import Decision

# The statistics (numpy, scipy) load only for the commands that use them: a registry command
# should not pay their import time.

F = TypeVar("F", bound=Callable[..., Any])
INTERNAL_ERROR = 3


def _console() -> Console:
    # Not a terminal (CI logs, pipes): no colour, and wide enough that tables do not fold.
    return Console(width=None if sys.stdout.isatty() else 140, highlight=False, soft_wrap=False)


def format_option(*choices: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        return click.option(
            "--format",
            "fmt",
            type=click.Choice(list(choices)),
            default=choices[0],
            show_default=True,
            help="Output format.",
        )(func)

    return decorate


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def echo_json(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), indent=2, default=str))


def echo_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console = _console()
    console.print(f"[bold]{title}[/bold]", soft_wrap=True)
    console.print(table)


def echo_fields(fields: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        click.echo(f"{key:<{width}}  {'' if value is None else value}")


def registry(ctx: click.Context) -> Registry:
    workspace: Path | None = ctx.find_root().params.get("workspace")
    return open_registry(workspace)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    help="The workspace folder (default: found from the current folder upwards, like git).",
)
@click.option("--traceback", is_flag=True, help="Show the Python traceback of an error.")
@click.option(
    "--actor", help="Who is acting, for the audit trail (default: git's user.name and email)."
)
@click.version_option(__version__, prog_name="gov")
def cli(workspace: Path | None, traceback: bool, actor: str | None) -> None:  # noqa: ARG001
    """gov: checkpoint governance and rollback for RL training of reasoning models.

    Judges read sampled episodes' chains of thought and actions; gov tells a bad reason that was
    considered and rejected (fine) from one that was rationalized into the same action (not fine),
    gates checkpoint promotion on it, flags the environments where it rises, and recommends the
    checkpoint to restart from. It never turns judgments into reward.

    \b
    Example:
        gov init                      # in your training repository
        gov env add code-tests --from envs/code_tests
        gov judge add cot-monitor --version 2026.10 --rubric rubric.md
        gov run add main
        gov checkpoint add main@1000 ckpt/1000.pt -e code-tests=1
        gov ingest monitor-output/main-step-1000.jsonl
        gov check main@1000 && gov promote main@1000
        gov rollback recommend                     # when an environment is flagged
    """
    if actor:
        import os

        os.environ["GOV_ACTOR"] = actor


@cli.command()
@click.argument(
    "directory", required=False, type=click.Path(file_okay=False, path_type=Path), default="."
)
def init(directory: Path) -> None:
    """Make a git repository (or a folder in one) a governance workspace.

    Adds gov.yaml, registry/, policies/ (a copy of the default policies), audit/, and initialises
    DVC unless the repository already uses it; all in one git commit. Running it again only adds
    what is missing and never overwrites your files.

    \b
    Example:
        gov init
        gov init path/to/training-repo
    """
    result = init_workspace(directory)
    if not result.created:
        click.echo(f"{result.root} is already a gov workspace; nothing to do")
        return
    click.echo(f"initialised gov workspace in {result.root} (commit {result.commit or '-'}):")
    for path in result.created:
        click.echo(f"  {path}")


@cli.command()
@format_option("table", "json")
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Summarise the workspace: runs, checkpoints, environments, judges.

    \b
    Example:
        gov status
        gov status --format json
    """
    summary = registry(ctx).summary()
    if fmt == "json":
        echo_json(summary)
        return
    _print_summary(summary.__dict__)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n) or "none"


def _print_summary(s: dict[str, Any]) -> None:
    echo_fields(
        [
            ("workspace", s["root"]),
            ("git HEAD", (s["head"] or "no commit")[:12]),
            ("DVC remote", s["dvc_remote"] or "none (artifacts only in the local DVC cache)"),
            ("runs", s["runs"]),
            ("checkpoints", f"{s['checkpoints']} ({_counts(s['checkpoints_by_status'])})"),
            (
                "environments",
                f"{sum(s['environments_by_status'].values())} "
                f"({_counts(s['environments_by_status'])})",
            ),
            ("judges", s["judges"]),
            ("reports", f"{s['reports']} ingested ({s['judgments']} judgments)"),
        ]
    )


# -- runs ---------------------------------------------------------------------------------
@cli.group()
def run() -> None:
    """Training runs and their lineage."""


@run.command("add")
@click.argument("name")
@click.option("--parent", "parent", metavar="RUN@STEP", help="The checkpoint this run forks from.")
@click.option("--note", help="Why this run exists.")
@click.pass_context
def run_add(ctx: click.Context, name: str, parent: str | None, note: str | None) -> None:
    """Register a training run (a restart names the checkpoint it forks from).

    \b
    Example:
        gov run add main
        gov run add main-r1 --parent main@2400 --note "restart after redesign of code-tests"
    """
    parent_run, step = parse_checkpoint_ref(parent) if parent else (None, None)
    record = registry(ctx).add_run(name, parent_run=parent_run, forked_from_step=step, note=note)
    click.echo(f"registered run {record.id}")


@run.command("list")
@format_option("table", "json")
@click.pass_context
def run_list(ctx: click.Context, fmt: str) -> None:
    """List the runs with their parents and checkpoint counts.

    \b
    Example:
        gov run list --format json
    """
    reg = registry(ctx)
    runs = reg.runs()
    counts = {r.id: len(reg.checkpoints(r.id)) for r in runs}
    if fmt == "json":
        echo_json([{**_jsonable(r), "checkpoints": counts[r.id]} for r in runs])
        return
    echo_table(
        "runs",
        ["run", "parent", "checkpoints", "created", "note"],
        [[r.id, _parent(r), counts[r.id], r.created.isoformat(), r.note] for r in runs],
    )


def _parent(r: Run) -> str:
    return f"{r.parent_run}@{r.forked_from_step}" if r.parent_run else "-"


@run.command("show")
@click.argument("name")
@format_option("table", "json")
@click.pass_context
def run_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show a run, its lineage and its checkpoints.

    \b
    Example:
        gov run show main
    """
    reg = registry(ctx)
    lineage = reg.lineage(name)
    checkpoints = reg.checkpoints(name)
    if fmt == "json":
        echo_json(
            {
                "run": lineage[-1],
                "lineage": [f"{r.id}" for r in lineage],
                "checkpoints": checkpoints,
            }
        )
        return
    record = lineage[-1]
    steps = [c.step for c in checkpoints]
    echo_fields(
        [
            ("run", record.id),
            ("created", record.created.isoformat()),
            ("forked from", _parent(record)),
            ("lineage", " -> ".join(r.id for r in lineage)),
            (
                "checkpoints",
                f"{len(steps)}" + (f" (steps {steps[0]}-{steps[-1]})" if steps else ""),
            ),
            ("note", record.note),
        ]
    )


# -- checkpoints --------------------------------------------------------------------------
def _parse_exposure(values: Sequence[str], exposure_file: Path | None) -> dict[str, float]:
    exposure: dict[str, float] = {}
    if exposure_file is not None:
        exposure.update(_read_exposure_file(exposure_file))
    for value in values:
        key, sep, weight = value.rpartition("=")
        try:
            exposure[key] = float(weight)
        except ValueError:
            key = ""
        if not sep or not key:
            raise click.BadParameter(
                f"{value!r}: expected ENV[@VERSION]=WEIGHT, for example code-tests=0.25",
                param_hint="--exposure",
            ) from None
    return exposure


def _read_exposure_file(path: Path) -> dict[str, float]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GovError(f"{path}: cannot read the exposure file: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in data.items()
    ):
        raise GovError(f"{path}: an exposure file maps ENV[@VERSION] to a weight, e.g. `math: 0.5`")
    return {k: float(v) for k, v in data.items()}


@cli.group()
def checkpoint() -> None:
    """Checkpoints: artifacts tracked by DVC, with what they were trained on."""


@checkpoint.command("add")
@click.argument("ref", metavar="RUN@STEP")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option(
    "--exposure",
    "-e",
    multiple=True,
    metavar="ENV[@VERSION]=WEIGHT",
    help="An environment (latest version unless @VERSION) and its mixture weight since the "
    "previous checkpoint. Repeat for each; weights sum to 1.",
)
@click.option(
    "--exposure-file",
    type=click.Path(dir_okay=False, path_type=Path, exists=True),
    help="A YAML mapping of ENV[@VERSION] to weight, instead of (or besides) --exposure.",
)
@click.option("--note", help="A note kept with the checkpoint.")
@format_option("table", "json")
@click.pass_context
def checkpoint_add(
    ctx: click.Context,
    ref: str,
    artifact: Path,
    exposure: tuple[str, ...],
    exposure_file: Path | None,
    note: str | None,
    fmt: str,
) -> None:
    """Register a checkpoint: DVC tracks ARTIFACT, git records the registry change.

    The artifact must be inside the workspace. It is pushed when DVC has a default remote.

    \b
    Example:
        gov checkpoint add main@1200 ckpt/step-1200.pt -e code-tests=0.6 -e math@v2=0.4
    """
    run_name, step = parse_checkpoint_ref(ref)
    weights = _parse_exposure(exposure, exposure_file)
    record = registry(ctx).add_checkpoint(run_name, step, artifact, weights, note=note)
    if fmt == "json":
        echo_json(record)
        return
    click.echo(f"registered checkpoint {record.ref} ({record.artifact}, md5 {record.artifact_md5})")


@checkpoint.command("list")
@click.option("--run", "run_name", help="Only this run's checkpoints.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in CheckpointStatus]),
    help="Only checkpoints with this status.",
)
@format_option("table", "json")
@click.pass_context
def checkpoint_list(ctx: click.Context, run_name: str | None, status: str | None, fmt: str) -> None:
    """List checkpoints, by run and step.

    \b
    Example:
        gov checkpoint list --run main --status promoted
    """
    found = registry(ctx).checkpoints(run_name)
    if status:
        found = [c for c in found if c.status.value == status]
    if fmt == "json":
        echo_json(found)
        return
    echo_table(
        "checkpoints",
        ["checkpoint", "status", "created", "artifact", "md5", "environments"],
        [
            [
                c.ref,
                c.status.value,
                c.created.isoformat(),
                c.artifact,
                c.artifact_md5[:10],
                len(c.exposure),
            ]
            for c in found
        ],
    )


@checkpoint.command("show")
@click.argument("ref", metavar="RUN@STEP")
@format_option("table", "json")
@click.pass_context
def checkpoint_show(ctx: click.Context, ref: str, fmt: str) -> None:
    """Show one checkpoint and its exposure.

    \b
    Example:
        gov checkpoint show main@1200
    """
    record: Checkpoint = registry(ctx).checkpoint(*parse_checkpoint_ref(ref))
    if fmt == "json":
        echo_json(record)
        return
    echo_fields(
        [
            ("checkpoint", record.ref),
            ("status", record.status.value),
            ("created", record.created.isoformat()),
            ("artifact", record.artifact),
            ("md5", record.artifact_md5),
            ("size", record.artifact_size),
            ("note", record.note),
        ]
    )
    echo_table(
        "exposure",
        ["environment", "version", "hash", "weight"],
        [
            [e.environment, f"v{e.version}", e.hash[7:19], f"{e.weight:.4f}"]
            for e in record.exposure
        ],
    )


# -- environments -------------------------------------------------------------------------
_FROM = click.option(
    "--from",
    "paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Files or folders of the environment and its scoring, hashed into the version "
    "(repeatable).",
)
_HASH = click.option(
    "--hash", "digest", help="A precomputed sha256 content hash instead of --from."
)


@cli.group()
def env() -> None:
    """Training environments and their versions (a redesign is a new version)."""


@env.command("add")
@click.argument("name")
@_FROM
@_HASH
@click.option("--description", help="What the environment trains.")
@click.option("--note", help="A note on this first version.")
@format_option("table", "json")
@click.pass_context
def env_add(
    ctx: click.Context,
    name: str,
    paths: tuple[Path, ...],
    digest: str | None,
    description: str | None,
    note: str | None,
    fmt: str,
) -> None:
    """Register an environment; version 1 is the content hash of its files.

    \b
    Example:
        gov env add code-tests --from envs/code_tests --from scoring/code_tests.py
        gov env add math --hash sha256:3f2a...  --description "competition math"
    """
    record = registry(ctx).add_environment(
        name, paths=list(paths), content_hash=digest, description=description, note=note
    )
    _print_env(record, fmt, f"registered environment {record.id} v1 ({record.current.hash})")


def _print_env(record: Environment, fmt: str, message: str) -> None:
    if fmt == "json":
        echo_json(record)
    else:
        click.echo(message)


@env.command("version")
@click.argument("name")
@_FROM
@_HASH
@click.option("--note", required=True, help="What the redesign changed (required).")
@format_option("table", "json")
@click.pass_context
def env_version(
    ctx: click.Context,
    name: str,
    paths: tuple[Path, ...],
    digest: str | None,
    note: str,
    fmt: str,
) -> None:
    """Register a new version of an environment after a redesign; it becomes active again.

    \b
    Example:
        gov env version code-tests --from envs/code_tests --note "hidden tests; grader checks I/O"
    """
    record = registry(ctx).add_environment_version(
        name, paths=list(paths), content_hash=digest, note=note
    )
    v = record.current
    _print_env(record, fmt, f"environment {record.id} is now v{v.number} ({v.hash})")


@env.command("list")
@format_option("table", "json")
@click.pass_context
def env_list(ctx: click.Context, fmt: str) -> None:
    """List environments with their status and current version.

    \b
    Example:
        gov env list --format json
    """
    found = registry(ctx).environments()
    if fmt == "json":
        echo_json(found)
        return
    echo_table(
        "environments",
        ["environment", "status", "version", "hash", "description"],
        [
            [e.id, e.status.value, f"v{e.current.number}", e.current.hash[7:19], e.description]
            for e in found
        ],
    )


@env.command("show")
@click.argument("name")
@format_option("table", "json")
@click.pass_context
def env_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show an environment and its version history.

    \b
    Example:
        gov env show code-tests
    """
    record = registry(ctx).environment(name)
    if fmt == "json":
        echo_json(record)
        return
    echo_fields(
        [
            ("environment", record.id),
            ("status", record.status.value),
            ("description", record.description),
        ]
    )
    echo_table(
        "versions",
        ["version", "hash", "created", "note"],
        [[f"v{v.number}", v.hash, v.created.isoformat(), v.note] for v in record.versions],
    )


# -- judges -------------------------------------------------------------------------------
@cli.group()
def judge() -> None:
    """Judges (monitors) and their versions: different versions are different series."""


@judge.command("add")
@click.argument("name")
@click.option("--version", "version", required=True, help="The judge's version label.")
@click.option(
    "--rubric",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="The rubric (prompt, instructions) file(s), hashed into the version.",
)
@click.option("--rubric-hash", help="A precomputed sha256 hash of the rubric instead of --rubric.")
@click.option("--description", help="What the judge is (model, person, ensemble).")
@click.option("--note", help="A note on this version.")
@format_option("table", "json")
@click.pass_context
def judge_add(
    ctx: click.Context,
    name: str,
    version: str,
    rubric: tuple[Path, ...],
    rubric_hash: str | None,
    description: str | None,
    note: str | None,
    fmt: str,
) -> None:
    """Register a judge, or a new version of one.

    \b
    Example:
        gov judge add cot-monitor --version 2026.10 --rubric monitor/rubric.md
    """
    record: Judge = registry(ctx).add_judge(
        name,
        version,
        rubric=list(rubric),
        rubric_hash=rubric_hash,
        description=description,
        note=note,
    )
    if fmt == "json":
        echo_json(record)
        return
    click.echo(f"registered judge {record.id} version {version} ({record.current.rubric_hash})")


@judge.command("list")
@format_option("table", "json")
@click.pass_context
def judge_list(ctx: click.Context, fmt: str) -> None:
    """List judges and their versions.

    \b
    Example:
        gov judge list
    """
    found = registry(ctx).judges()
    if fmt == "json":
        echo_json(found)
        return
    echo_table(
        "judges",
        ["judge", "version", "rubric hash", "created", "description"],
        [
            [j.id, v.version, v.rubric_hash[7:19], v.created.isoformat(), j.description]
            for j in found
            for v in j.versions
        ],
    )


@judge.command("show")
@click.argument("name")
@format_option("table", "json")
@click.pass_context
def judge_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show a judge and its versions.

    \b
    Example:
        gov judge show cot-monitor --format json
    """
    record = registry(ctx).judge(name)
    if fmt == "json":
        echo_json(record)
        return
    echo_fields([("judge", record.id), ("description", record.description)])
    echo_table(
        "versions",
        ["version", "rubric hash", "created", "note"],
        [[v.version, v.rubric_hash, v.created.isoformat(), v.note] for v in record.versions],
    )


# -- reports and metrics ---------------------------------------------------------------------
@cli.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Ingest every report file in this folder (those seen before change nothing).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Let these reports replace earlier verdicts on the same episodes by the same judge "
    "version (recorded in the ledger and the commit). Without it, a changed verdict is refused.",
)
@format_option("table", "json")
@click.pass_context
def ingest(
    ctx: click.Context, files: tuple[Path, ...], folder: Path | None, replace: bool, fmt: str
) -> None:
    """Validate judge reports whole, join them with the registry, count and keep them.

    FILES are episode-level JSONL (plain or gzip) or Parquet, or pre-aggregated counts in the
    same formats (see `gov schema report`). Every file is checked before anything is stored; a
    bad file is refused whole, naming its first bad records. Each kept file is content-addressed
    and tracked by DVC; ingesting the same file again changes nothing.

    \b
    Example:
        gov ingest monitor-output/main-step-001200.jsonl.gz
        gov ingest --replace rejudged/main-step-001200.jsonl
    """
    if folder is not None:
        files = files + tuple(
            sorted(
                p
                for p in folder.iterdir()
                if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz", ".parquet"))
            )
        )
    if not files:
        if folder is None:
            raise click.UsageError("give report FILES or --dir FOLDER")
        click.echo(f"{folder}: no report files: nothing to ingest")
        return
    reg = registry(ctx)
    with _progress_bar(files) as progress:
        result = ingest_reports(reg, list(files), replace=replace, progress=progress)
    if fmt == "json":
        echo_json(result)
        return
    for source, md5 in result.unchanged:
        click.echo(f"{source}: already ingested (md5 {md5}); nothing changed")
    for entry in result.ingested:
        extra = (
            f", {entry.duplicates} repeated judgments not counted again" if entry.duplicates else ""
        )
        if entry.replaced:
            extra += f", {entry.replaced} verdicts replacing earlier ones"
        click.echo(
            f"{entry.source}: {entry.records} records, {entry.counted} judgments counted in "
            f"{entry.groups} groups{extra} -> {entry.path}"
        )
    if result.commit:
        click.echo(f"committed {result.commit[:12]}")


@contextmanager
def _progress_bar(files: Sequence[Path]) -> Iterator[Callable[[str, float], None] | None]:
    """A progress bar for large inputs, on a terminal only."""
    large = sum(f.stat().st_size for f in files if f.is_file()) > 64 << 20
    if not (large and sys.stderr.isatty()):
        yield None
        return
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading reports", total=1.0)

        def update(_phase: str, fraction: float) -> None:
            bar.update(task, completed=fraction)

        yield update


@cli.group()
def schema() -> None:
    """JSON Schemas of gov's file formats, for other tools to validate against."""


@schema.command("report")
def schema_report() -> None:
    """Print the JSON Schema of a divergence report (episode-level and aggregated records).

    \b
    Example:
        gov schema report > gov-report.schema.json
    """
    echo_json(report_json_schema())


@cli.command()
@click.option("--run", "run_name", help="Follow this run's lineage (ancestors up to each fork).")
@click.option("--env", "environment", help="Only this environment.")
@click.option("--judge", "judge_name", help="Only this judge.")
@click.option(
    "--metric",
    "metric_names",
    multiple=True,
    type=click.Choice([*METRICS, "all"]),
    help="The metric(s) to show (repeatable; default rationalization_rate).",
)
@click.option(
    "--dvc-plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one CSV per series (step, rate, low, high) here, for `dvc plots`.",
)
@format_option("table", "json", "csv")
@click.pass_context
def metrics(
    ctx: click.Context,
    run_name: str | None,
    environment: str | None,
    judge_name: str | None,
    metric_names: tuple[str, ...],
    plots_dir: Path | None,
    fmt: str,
) -> None:
    """Show each metric's series per environment over the checkpoints, with 95% intervals.

    Intervals are Wilson score intervals. A series is one environment version judged by one judge
    version: different judge versions are separate series, never pooled.

    \b
    Example:
        gov metrics --env code-unit-tests
        gov metrics --metric all --format csv > metrics.csv
    """
    if "all" in metric_names or (not metric_names and fmt != "table"):
        names = list(METRICS)  # files and JSON carry every metric unless asked otherwise
    else:
        names = list(metric_names) or ["rationalization_rate"]
    found = metric_series(
        registry(ctx), metrics=names, run=run_name, environment=environment, judge=judge_name
    )
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
        for s in found:
            lines = ["step,rate,low,high"] + [
                f"{p.step},{_num(p.value)},{_num(p.low)},{_num(p.high)}" for p in s.points
            ]
            name = f"{s.environment}-v{s.environment_version}-{s.judge}-{s.judge_version}.csv"
            atomic_write(plots_dir / name, ("\n".join(lines) + "\n").encode())
        click.echo(f"wrote {len(found)} series to {plots_dir}")
        return
    if fmt == "json":
        echo_json(found)
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [
                "metric",
                "run",
                "step",
                "environment",
                "environment_version",
                "judge",
                "judge_version",
                "k",
                "n",
                "value",
                "low",
                "high",
            ]
        )
        for s in found:
            for p in s.points:
                writer.writerow(
                    [
                        s.metric,
                        p.run,
                        p.step,
                        s.environment,
                        s.environment_version,
                        s.judge,
                        s.judge_version,
                        p.k,
                        p.n,
                        _num(p.value),
                        _num(p.low),
                        _num(p.high),
                    ]
                )
        click.echo(buffer.getvalue(), nl=False)
        return
    if not found:
        click.echo("no judgments ingested yet for this selection: see `gov ingest`")
        return
    judges_per_env: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for s in found:
        judges_per_env.setdefault((s.metric, s.environment), set()).add((s.judge, s.judge_version))
    for s in found:
        rows = [
            [f"{p.run}@{p.step}", p.k, p.n, _pct(p.value), f"[{_pct(p.low)}, {_pct(p.high)}]"]
            if p.value is not None
            else [f"{p.run}@{p.step}", p.k, p.n, "-", "insufficient evidence (n = 0)"]
            for p in s.points
        ]
        echo_table(
            f"{s.metric} · {s.environment} v{s.environment_version} · judge {s.judge} "
            f"{s.judge_version}",
            ["checkpoint", "k", "n", "value", "95% interval"],
            rows,
        )
    for (metric, env), judges in judges_per_env.items():
        if len(judges) > 1:
            listed = ", ".join(f"{j} {v}" for j, v in sorted(judges))
            click.echo(
                f"note: {env} has {len(judges)} judge series for {metric} ({listed}): "
                "shown separately, not pooled"
            )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


# -- gates: check, promote, flags ------------------------------------------------------------
@cli.command()
@click.argument("ref", metavar="RUN@STEP", required=False)
@click.option("--latest", is_flag=True, help="Check the latest checkpoint of --run (or `main`).")
@click.option("--run", "run_name", help="The run whose latest checkpoint --latest checks.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when blocked (for pipelines).")
@click.option(
    "--metrics",
    "metrics_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the decision's figures as a DVC metrics JSON file.",
)
@format_option("table", "json", "junit", "github", "markdown")
@click.option("--all", "show_all", is_flag=True, help="List clear results too (table format).")
@click.option(
    "--dry-run", is_flag=True, help="Evaluate and print, but record nothing and flag nothing."
)
@click.pass_context
def check(
    ctx: click.Context,
    ref: str | None,
    latest: bool,
    run_name: str | None,
    exit_zero: bool,
    metrics_file: Path | None,
    fmt: str,
    show_all: bool,
    dry_run: bool,
) -> None:
    """Evaluate every policy at a checkpoint: exit 0 pass (warnings included), 1 blocked.

    Only the history up to and including RUN@STEP is read. The decision, with its exact inputs,
    is written to audit/decisions/ and committed; environments a policy flags are marked for
    redesign; a blocked checkpoint is marked blocked.

    \b
    Example:
        gov check main@7250
        gov check main@7250 --format junit > gov-check.xml
        gov check main@7250 --format github      # annotations in a GitHub workflow
    """
    from governance import render
    from governance.check import decide, decision_record
    from governance.check import record as record_decision

    reg = registry(ctx)
    if latest == (ref is not None):
        raise click.UsageError("give RUN@STEP or --latest, one of them")
    if ref is None:
        run = _default_run(reg, run_name)
        own = reg.checkpoints(run)
        if not own:
            click.echo(f"run {run!r} has no checkpoints yet: nothing to check")
            if metrics_file is not None:
                atomic_write(metrics_file, b'{"checkpoint": null, "outcome": "none"}\n')
            return
        ref = own[-1].ref
    decision = decide(reg, ref)
    if not dry_run:
        record_decision(reg, decision)
    if metrics_file is not None:
        figures = {
            "checkpoint": decision.checkpoint,
            "outcome": decision.outcome,
            "blocked": int(decision.outcome == "block"),
            "fired": len(decision.fired),
            "flagged": len(decision.flagged),
        }
        atomic_write(metrics_file, (json.dumps(figures, indent=2) + "\n").encode())
    if fmt == "json":
        echo_json(decision_record(decision))
    elif fmt == "junit":
        click.echo(render.junit(decision), nl=False)
    elif fmt == "github":
        click.echo(render.github(decision), nl=False)
    elif fmt == "markdown":
        click.echo(render.markdown(decision), nl=False)
    else:
        _print_decision(decision, show_all)
    if decision.outcome == "block" and not exit_zero:
        ctx.exit(1)


def _print_decision(decision: Decision, show_all: bool) -> None:
    click.secho(
        f"decision: {decision.outcome.upper()} at {decision.checkpoint}",
        bold=True,
        fg={"pass": "green", "warn": "yellow", "block": "red"}[decision.outcome],
    )
    rows = []
    clear = thin = 0
    for r in decision.results:
        if not show_all and r.status == "clear":
            clear += 1
            continue
        if not show_all and r.status == "insufficient" and r.policy not in decision.gating:
            thin += 1
            continue
        probability = "-" if r.probability is None else f"{r.probability:.3f}"
        numbers = (
            "-"
            if r.value is None
            else f"{r.k}/{r.n} = {_pct(r.value)} [{_pct(r.low)}, {_pct(r.high)}]"
        )
        rows.append([r.policy, r.series.label, r.status, numbers, probability, r.reason])
    if rows:
        echo_table(
            "results", ["policy", "series", "result", "at this checkpoint", "P", "why"], rows
        )
    if clear or thin:
        click.echo(
            f"{clear} more results are clear and {thin} have too little evidence to say, "
            "which this decision does not count against the checkpoint (--all lists them)"
        )
    empty = [r for r in decision.results if r.reason.startswith("no judgments for")]
    if empty and len(empty) == len(decision.results):
        click.echo(f"no evidence: nothing judged up to {decision.checkpoint} (see `gov ingest`)")
    if decision.flagged:
        click.echo(f"flagged for redesign: {', '.join(decision.flagged)}")
    fired = {a for acts in decision.actions.values() for a in acts}
    if "recommend_rollback" in fired:
        click.echo("a policy recommends a rollback: see `gov rollback recommend`")
    if "require_review" in fired:
        click.echo("a policy requires a human review of this checkpoint")
    click.echo(f"inputs digest {decision.digest[:16]} (registry, policies, reports, judges)")


@cli.command()
@click.argument("ref", metavar="RUN@STEP")
@click.option("--override", is_flag=True, help="Promote even though the policies say otherwise.")
@click.option("--reason", help="Why the override (required with --override; recorded).")
@click.pass_context
def promote(ctx: click.Context, ref: str, override: bool, reason: str | None) -> None:
    """Promote a checkpoint, after a passing `gov check` of the same inputs.

    A blocked checkpoint is promoted only with --override --reason TEXT, which is recorded in
    audit/overrides/ and in the commit.

    \b
    Example:
        gov check main@4000 && gov promote main@4000
        gov promote main@7250 --override --reason "judge misfires on this env; see #123"
    """
    from governance.promotion import promote as promote_checkpoint

    if override and not reason:
        raise click.UsageError("--override needs --reason TEXT")
    if reason and not override:
        raise click.UsageError("--reason goes with --override")
    result = promote_checkpoint(registry(ctx), ref, override_reason=reason if override else None)
    how = f" (override: {result.override})" if result.override else f" (check {result.outcome})"
    click.echo(f"promoted {result.checkpoint}{how}")


@cli.group()
def flags() -> None:
    """Environments flagged for redesign by a policy, until a new version resolves them."""


@flags.command("list")
@format_option("table", "json")
@click.pass_context
def flags_list(ctx: click.Context, fmt: str) -> None:
    """List flags, open and resolved.

    \b
    Example:
        gov flags list
    """
    found = list_flags(registry(ctx))
    if fmt == "json":
        echo_json(found)
        return
    echo_table(
        "flags",
        ["environment", "version", "status", "raised at", "policies"],
        [
            [
                f.environment,
                f"v{f.version}",
                f.status,
                f.checkpoint,
                ", ".join(sorted({e.policy for e in f.evidence})),
            ]
            for f in found
        ],
    )


@flags.command("show")
@click.argument("environment")
@format_option("table", "json")
@click.pass_context
def flags_show(ctx: click.Context, environment: str, fmt: str) -> None:
    """Show a flag and its evidence.

    \b
    Example:
        gov flags show code-unit-tests
    """
    flag = get_flag(registry(ctx), environment)
    if fmt == "json":
        echo_json(flag)
        return
    echo_fields(
        [
            ("environment", f"{flag.environment} (flagged version v{flag.version})"),
            ("status", flag.status),
            ("raised at", flag.checkpoint),
            ("decision", flag.decision[:16]),
            (
                "acknowledged",
                f"{flag.acknowledged_by}: {flag.acknowledged_reason}"
                if flag.acknowledged_by
                else None,
            ),
            ("resolved by", f"v{flag.resolved_by_version}" if flag.resolved_by_version else None),
        ]
    )
    echo_table(
        "evidence",
        ["policy", "series", "why"],
        [[e.policy, e.series, e.reason] for e in flag.evidence],
    )
    if flag.status != "resolved":
        click.echo(
            f"resolve it by registering the redesign: gov env version {flag.environment} ..."
        )


@flags.command("ack")
@click.argument("environment")
@click.option("--reason", required=True, help="Who owns the redesign, or why the flag stands.")
@click.pass_context
def flags_ack(ctx: click.Context, environment: str, reason: str) -> None:
    """Acknowledge a flag: it stays until a new environment version resolves it.

    \b
    Example:
        gov flags ack code-unit-tests --reason "grader rewrite tracked in #456"
    """
    from governance.audit import actor_of

    reg = registry(ctx)
    flag = acknowledge_flag(reg, environment, reason, actor_of(reg.ws))
    click.echo(f"acknowledged the flag on {flag.environment} ({flag.acknowledged_by})")


@cli.group()
def policy() -> None:
    """Policy tooling: lint, explain a computation, run test cases."""


def _policy_folder(ctx: click.Context, folder: Path | None) -> tuple[Path, Path]:
    if folder is not None:
        return folder.resolve(), folder.resolve().parent
    ws = registry(ctx).ws
    return ws.policies, ws.root


@policy.command("lint")
@click.argument(
    "folder", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@click.pass_context
def policy_lint(ctx: click.Context, folder: Path | None) -> None:
    """Check policy files: schema, and what their numbers imply (exit 2 on an error).

    Beyond the schema: a condition that can never fire at the declared minimum evidence, a
    threshold reachable only at absurd rates, a baseline too short to mean anything.

    \b
    Example:
        gov policy lint
        gov policy lint path/to/policies
    """
    from governance.policy_tools import lint as lint_policies

    folder, root = _policy_folder(ctx, folder)
    findings = lint_policies(folder, root)
    for finding in findings:
        click.echo(str(finding), err=finding.level == "error")
    errors = sum(1 for f in findings if f.level == "error")
    files = len([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    click.echo(f"{files} policy files, {errors} errors, {len(findings) - errors} warnings")
    if errors:
        ctx.exit(2)


@policy.command("explain")
@click.argument("name")
@click.argument("ref", metavar="RUN@STEP")
@click.option("--env", "environment", help="Only this environment's series.")
@click.pass_context
def policy_explain(ctx: click.Context, name: str, ref: str, environment: str | None) -> None:
    """Show one policy's computation at a checkpoint, step by step.

    \b
    Example:
        gov policy explain rationalization-rate-rising main@7250 --env code-unit-tests
    """
    from governance.policy_tools import explain as explain_policy

    for line in explain_policy(registry(ctx), name, ref, environment):
        click.echo(line)


@policy.command("test")
@click.argument(
    "folder", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@click.pass_context
def policy_test(ctx: click.Context, folder: Path | None) -> None:
    """Run the policy test cases (policies/tests/*.yaml); exit 1 if one fails.

    A case is a small series of (k, n) per checkpoint, the metric's numerator and denominator,
    and the result expected at the last one: fired, clear, insufficient or unavailable.

    \b
    Example:
        gov policy test
    """
    from governance.policies import load_policies
    from governance.policy_tools import run_tests as run_policy_tests

    policies_dir, root = _policy_folder(ctx, None)
    tests = folder.resolve() if folder is not None else policies_dir / "tests"
    results = run_policy_tests(tests, root, load_policies(policies_dir, root))
    for r in results:
        mark = "ok  " if r.passed else "FAIL"
        click.echo(
            f"{mark} {r.policy}: {r.case}"
            + ("" if r.passed else f" (expected {r.expected}, got {r.got}: {r.reason})")
        )
    failed = sum(1 for r in results if not r.passed)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        ctx.exit(1)


@cli.group()
def rollback() -> None:
    """The restore point: the checkpoint to restart training from, before the problem arose."""


@rollback.command("recommend")
@click.option("--run", "run_name", help="The run (default: the only run, or `main`).")
@click.option(
    "--alpha",
    type=float,
    default=0.02,
    show_default=True,
    help="The largest acceptable chance that the restore point is already contaminated.",
)
@click.option(
    "--metrics",
    "metrics_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the recommendation's figures as a DVC metrics JSON file.",
)
@format_option("table", "json")
@click.pass_context
def rollback_recommend(
    ctx: click.Context, run_name: str | None, alpha: float, metrics_file: Path | None, fmt: str
) -> None:
    """Name the checkpoint to restart from, the environments to redesign, and the cost.

    For every flagged environment, the onset posterior of its rationalization rate gives each
    checkpoint's chance of being after the onset; the restore point is the latest restorable
    checkpoint where that chance is at most alpha for all of them.

    \b
    Example:
        gov rollback recommend --run main
        gov rollback recommend --alpha 0.01 --format json
    """
    from governance.rollback import recommend, record_recommendation

    reg = registry(ctx)
    rec = recommend(reg, _default_run(reg, run_name), alpha=alpha)
    record_recommendation(reg, rec)
    if metrics_file is not None:
        figures = {
            "restore": rec.restore,
            "p_contaminated": rec.p_contaminated,
            "alpha": rec.alpha,
            "checkpoints_lost": rec.checkpoints_lost,
            "steps_lost": rec.steps_lost,
            "flagged": len(rec.flagged),
        }
        atomic_write(metrics_file, (json.dumps(figures, indent=2) + "\n").encode())
    if fmt == "json":
        echo_json(rec)
        return
    _print_recommendation(rec)


def _default_run(reg: Registry, run_name: str | None) -> str:
    if run_name is not None:
        return run_name
    runs = [r.id for r in reg.runs()]
    return runs[0] if len(runs) == 1 else "main"


def _print_recommendation(rec: Any) -> None:
    if rec.restore is None:
        click.echo(f"no restore point: {rec.reason}")
    else:
        click.secho(f"restore point: {rec.restore}", bold=True)
        click.echo(
            f"  P(already contaminated) = {rec.p_contaminated:.4f} (alpha {rec.alpha}); "
            f"training given up: {rec.checkpoints_lost} checkpoints, {rec.steps_lost} steps"
        )
    if rec.flagged:
        echo_table(
            "environments to redesign",
            [
                "environment",
                "judge",
                "P(rise)",
                "onset (median)",
                "90% credible interval",
                "P(onset <= restore)",
            ],
            [
                [
                    e.environment,
                    e.judge,
                    f"{e.p_rise:.3f}",
                    e.onset,
                    f"{e.onset_interval[0]} .. {e.onset_interval[1]}",
                    f"{e.p_contaminated:.4f}",
                ]
                for e in rec.flagged
            ],
        )
    if rec.fine:
        click.echo(f"fine: {', '.join(rec.fine)}")
    for line in rec.skipped:
        click.echo(f"skipped (safer, not restorable): {line}")


@rollback.command("apply")
@click.option("--run", "run_name", help="The run to roll back (default: the only run, or `main`).")
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write the restore point's checkpoint artifact.",
)
@click.option("--name", "new_run", help="The new run's name (default: RUN-rN).")
@click.option(
    "--alpha",
    type=float,
    default=0.02,
    show_default=True,
    help="The largest acceptable chance that the restore point is contaminated.",
)
@click.option("--yes", is_flag=True, help="Do it; without --yes this is a dry run.")
@click.pass_context
def rollback_apply(
    ctx: click.Context,
    run_name: str | None,
    target: Path,
    new_run: str | None,
    alpha: float,
    yes: bool,
) -> None:
    """Fork a new run from the restore point and put the flagged environments in redesign.

    Checks the restore point's artifact out (with DVC) to --to, records the rollback in
    audit/rollbacks/, and from then on `gov check` blocks any checkpoint trained on a flagged
    version of an environment. Without --yes it only says what it would do.

    \b
    Example:
        gov rollback apply --to restart/ckpt.pt            # dry run
        gov rollback apply --to restart/ckpt.pt --yes
    """
    from governance.rollback import apply, recommend

    reg = registry(ctx)
    run = _default_run(reg, run_name)
    if not yes:
        rec = recommend(reg, run, alpha=alpha)
        _print_recommendation(rec)
        if rec.restore is not None:
            click.echo(
                f"dry run: with --yes, gov would fork a new run from {rec.restore}, write its "
                f"artifact to {target}, and put {', '.join(e.environment for e in rec.flagged)} "
                "in redesign"
            )
        return
    done = apply(reg, run, to=target, new_run=new_run, alpha=alpha)
    click.echo(
        f"new run {done.new_run} forked from {done.recommendation.restore}; artifact at "
        f"{done.artifact}; in redesign: {', '.join(done.redesign)} "
        f"(commit {(done.commit or '-')[:12]})"
    )


@cli.group("audit")
def audit_group() -> None:
    """The audit trail: every decision, promotion, override, flag, redesign and rollback."""


@audit_group.command("log")
@click.option("--since", help="Entries from this date or time on (2026-11-01, or 7d, 24h).")
@click.option("--run", "run_name", help="Only entries about this run.")
@click.option("--checkpoint", help="Only entries about this checkpoint (RUN@STEP).")
@click.option("--env", "environment", help="Only entries about this environment.")
@click.option("--kind", help="Only entries of this kind (check, promotion, override, ...).")
@format_option("table", "json")
@click.pass_context
def audit_log(
    ctx: click.Context,
    since: str | None,
    run_name: str | None,
    checkpoint: str | None,
    environment: str | None,
    kind: str | None,
    fmt: str,
) -> None:
    """List audit entries, oldest first.

    \b
    Example:
        gov audit log --since 7d --kind override
        gov audit log --env code-unit-tests --format json
    """
    from governance import audit

    ws = registry(ctx).ws
    found = audit.log(
        ws,
        since=audit.parse_since(since) if since else None,
        run=run_name,
        checkpoint=checkpoint,
        environment=environment,
        kind=kind,
    )
    if fmt == "json":
        echo_json(found)
        return
    echo_table(
        f"audit trail ({len(found)} entries)",
        ["#", "id", "time", "kind", "subject", "outcome", "actor", "reason"],
        [
            [
                e["seq"],
                e["id"][:12],
                e["time"],
                e["kind"],
                " ".join(f"{k}={v}" for k, v in e.get("subject", {}).items()),
                e["outcome"],
                e["actor"],
                (e.get("reason") or "")[:60],
            ]
            for e in found
        ],
    )


@audit_group.command("show")
@click.argument("entry")
@format_option("table", "json")
@click.pass_context
def audit_show(ctx: click.Context, entry: str, fmt: str) -> None:
    """Show one entry (by number, or by a prefix of its id) and what it references: the
    policy texts and decision it used, as committed.

    \b
    Example:
        gov audit show 3f2a9c
    """
    from governance import audit

    shown = audit.show(registry(ctx).ws, entry)
    if fmt == "json":
        echo_json(shown)
        return
    click.echo(json.dumps(shown["entry"], indent=2))
    resolved = shown["resolved"]
    if "commit" in resolved:
        click.echo(f"recorded in commit {resolved['commit']}")
    for path, text in resolved.get("policies", {}).items():
        click.echo(f"--- {path} (as committed then)")
        click.echo(text if text is not None else "(not in that commit)")
    if resolved.get("decision"):
        fired = [r for r in resolved["decision"]["results"] if r["status"] == "fired"]
        click.echo(f"--- decision: {resolved['decision']['outcome']}, {len(fired)} results fired")
        for r in fired:
            click.echo(f"  {r['policy']}: {r['reason']} (k = {r['k']}, n = {r['n']})")
            if r.get("seen"):
                seen = ", ".join(f"{ref} {k}/{n}" for ref, k, n in r["seen"][-12:])
                click.echo(f"    the series it saw (last 12 of {len(r['seen'])}): {seen}")
    for md5 in resolved.get("reports_missing", []):
        click.echo(f"report {md5} is not in the workspace: `dvc pull` it to inspect")


@audit_group.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Verify the trail: exit 0 intact, 1 broken (naming the first bad entry).

    Checks every link of the hash chain, and that every chain head a git commit recorded is
    still in it (a trail rewritten and recommitted is caught).

    \b
    Example:
        gov audit verify
    """
    from governance import audit

    result = audit.verify(registry(ctx).ws)
    click.echo(
        f"audit trail intact: {result.entries} entries, head {(result.head or '-')[:16]}, "
        f"{result.anchored} heads anchored in git history"
    )
    for md5 in result.missing_reports:
        click.echo(f"note: report {md5} named by an entry is not in the workspace (dvc pull it)")


@audit_group.command("pressure")
@format_option("table", "json")
@click.pass_context
def audit_pressure(ctx: click.Context, fmt: str) -> None:
    """Interventions made on monitor evidence, per environment: each is optimization pressure
    on the chain of thought, selecting for rationalization the judge cannot see.

    \b
    Example:
        gov audit pressure
    """
    from governance import audit

    found = audit.pressure(registry(ctx).ws)
    if fmt == "json":
        echo_json(found)
        return
    echo_table(
        "monitor pressure",
        ["environment", "flags raised", "redesigns", "rollbacks"],
        [
            [env, c["flag_raised"], c["redesign"], c["rollback_applied"]]
            for env, c in sorted(found.items())
        ],
    )
    heavy = [env for env, c in found.items() if c["redesign"] >= 2]
    for env in heavy:
        click.echo(
            f"{env}: redesigned {found[env]['redesign']} times on monitor evidence: check falling "
            "rates with an independent held-out judge before trusting them"
        )


@cli.command("report")
@click.option("--run", "run_name", help="The run (default: `main`, or the only run).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write (its folder must exist).",
)
@click.pass_context
def report_command(ctx: click.Context, run_name: str | None, output: Path) -> None:
    """Write one self-contained HTML review page for a run and its lineage.

    The latest decision, flagged environments, restore point and overrides at the top; each
    environment's rationalization rate with its interval band, onset, policy marks and the
    restore point; the audit timeline. It opens offline and prints.

    \b
    Example:
        gov report --run main -o review.html
    """
    from governance.report import build_report

    result = build_report(registry(ctx), output, run_name)
    click.echo(
        f"wrote {result.path} (run {result.run}, {result.environments} environments, "
        f"flagged: {', '.join(result.flagged) or 'none'})"
    )


@cli.command("backtest")
@click.option("--run", "run_name", help="The run to replay (default: the only run, or `main`).")
@format_option("table", "json")
@click.pass_context
def backtest_command(ctx: click.Context, run_name: str | None, fmt: str) -> None:
    """Replay the policies at every checkpoint of a run, each seeing only its past.

    Shows, per policy and series, the first checkpoint that would have warned, blocked or
    flagged, and which promotions the policies would have blocked: how to tune policies on past
    runs before they gate anything. Nothing is recorded.

    \b
    Example:
        gov backtest --run main
        gov backtest --run main --format json > backtest.json
    """
    from governance.check import backtest as run_backtest

    reg = registry(ctx)
    result = run_backtest(reg, _default_run(reg, run_name))
    if fmt == "json":
        echo_json(result)
        return
    blocks = sum(1 for o in result.outcomes.values() if o == "block")
    warns = sum(1 for o in result.outcomes.values() if o == "warn")
    click.echo(
        f"replayed {result.checkpoints} checkpoints of {result.run}: {blocks} would be blocked, "
        f"{warns} would warn"
    )
    if result.alarms:
        echo_table(
            "first alarms",
            ["first fired at", "policy", "series", "actions", "checkpoints fired", "restore point"],
            [
                [
                    a.checkpoint,
                    a.policy,
                    a.series.label,
                    ", ".join(a.actions),
                    a.fired_at,
                    a.restore or "-",
                ]
                for a in result.alarms
            ],
        )
    for env, ref in sorted(result.flagged.items()):
        click.echo(f"would flag {env} at {ref}")
    if result.blocked_promotions:
        click.echo(
            f"promotions the policies would have blocked: {', '.join(result.blocked_promotions)}"
        )
    else:
        click.echo("no promoted checkpoint would have been blocked")


# -- the bundled example ------------------------------------------------------------------
@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=None, help="Seed of the generator (default: the spec's).")
@click.option(
    "--remote",
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder to use as the example's DVC remote (artifacts are pushed there).",
)
@format_option("table", "json")
def example(directory: Path | None, seed: int | None, remote: Path | None, fmt: str) -> None:
    """Build the bundled example workspace and run gov's main job on it.

    DIRECTORY must be new or empty (default: a new temporary folder); it never is the gov
    checkout. The example is deterministic for a given seed.

    \b
    Example:
        gov example /tmp/gov-example
        cd /tmp/gov-example && gov status
    """
    result: ExampleResult = build_example(directory, seed=seed, remote=remote)
    if fmt == "json":
        echo_json(result)
        return
    click.echo(f"built the example workspace in {result.root}")
    click.echo("")
    _print_summary(result.summary.__dict__)
    click.echo("")
    echo_table(
        f"rationalization rate per environment: first {result.window} checkpoints against the "
        f"last {result.window} (95% Wilson intervals), and the pattern the example planted",
        ["environment", "early", "late", "planted pattern"],
        [
            [e.environment, _rate(e.early), _rate(e.late), result.patterns[e.environment]]
            for e in result.environments
        ],
    )
    click.echo(f"\ngov check {result.checked}: {result.outcome.upper()}")
    for env, first in result.flagged.items():
        click.echo(
            f"  flagged for redesign: {env} (onset estimated at {result.onsets.get(env, '-')}; "
            f"the policies would first have flagged it at {first})"
        )
    if result.restore:
        click.echo(
            f"restore point: {result.restore} (P(already contaminated) = "
            f"{result.p_contaminated:.3f}; {result.checkpoints_lost} checkpoints of training "
            "given up): see `gov rollback recommend`"
        )
    click.echo(f"review page: {result.report} (open it in a browser; it works offline)")
    click.echo(f"\nnext: cd {result.root} && gov check {result.checked} && gov rollback recommend")


def _rate(counts: tuple[int, int]) -> str:
    k, n = counts
    if n == 0:
        return "insufficient evidence"
    low, high = wilson(k, n)
    return f"{k}/{n} = {k / n:.2%} [{low:.2%}, {high:.2%}]"


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in args
    try:
        code = cli.main(args=args, prog_name="gov", standalone_mode=False)
    except GovError as exc:
        if show_traceback:
            raise
        click.secho(f"gov: error: {exc.message}", fg="red", err=True)
        for line in exc.details:
            click.echo(f"  {line}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("gov: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "gov"
        click.secho(
            f"gov: error: {exc.format_message()} (see `{command} --help`)", fg="red", err=True
        )
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.secho(f"gov: error: {exc.format_message()}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if show_traceback:
            raise
        detail = " ".join(str(exc).split())[:300]
        click.secho(
            f"gov: internal error: {type(exc).__name__}: {detail} (rerun with --traceback "
            "and report it)",
            fg="red",
            err=True,
        )
        sys.exit(INTERNAL_ERROR)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
