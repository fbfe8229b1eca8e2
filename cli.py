"""The `gov` command: click declarations, one `governance.api` call per command, and one way
to render what it returns (`governance.render`).

Installed as `governance.cli` (see pyproject.toml). Everything here is argument parsing and
display; the product's logic, defaults and file formats live in the library.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from governance import api, render
from governance.errors import GovError

F = TypeVar("F", bound=Callable[..., Any])
INTERNAL_ERROR = 3

# What to tell a command-line user where the library names the keyword argument that fixes it.
REMEDIES: dict[str, Callable[[str], str]] = {
    "replace": lambda m: f"{m}; pass --replace to record the new verdicts in their place",
    "override": lambda m: f"{m} (--override --reason TEXT, and that is recorded)",
    "name": lambda m: f"{m}: pass another --name",
    "since": lambda m: f"--since {m}",
    "exposure": lambda m: f"invalid --exposure: {m}",
    "workspace": lambda m: f"{m}, or pass --workspace",
    "workspace_folder": lambda m: f"--workspace {m}",
}


def output_options(*offered: render.View | str) -> Callable[[F], F]:
    """The `--format` option, the same on every command that prints data: its choices are the
    formats the command's view offers (`render.View`), the first the default. The command
    prints with `render.emit(result, fmt, view)`, the same view."""
    choices = [f for v in offered for f in (v.formats if isinstance(v, render.View) else (v,))]

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


def _ws(ctx: click.Context) -> Path | None:
    workspace: Path | None = ctx.find_root().params.get("workspace")
    return workspace


def _actor(ctx: click.Context) -> str | None:
    actor: str | None = ctx.find_root().params.get("actor")
    return actor


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
@click.version_option(api.__version__, prog_name="gov")
def cli(workspace: Path | None, traceback: bool, actor: str | None) -> None:
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


@cli.command()
@click.argument(
    "directory", required=False, type=click.Path(file_okay=False, path_type=Path), default="."
)
@output_options(render.INITIALISED)
def init(directory: Path, fmt: str) -> None:
    """Make a git repository (or a folder in one) a governance workspace.

    Adds gov.yaml, registry/, policies/ (a copy of the default policies), audit/, and initialises
    DVC unless the repository already uses it; all in one git commit. Running it again only adds
    what is missing and never overwrites your files.

    \b
    Example:
        gov init
        gov init path/to/training-repo
    """
    render.emit(api.init(directory), fmt, render.INITIALISED)


@cli.command()
@output_options(render.SUMMARY)
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Summarise the workspace: runs, checkpoints, environments, judges.

    \b
    Example:
        gov status
        gov status --format json
    """
    render.emit(api.status(_ws(ctx)), fmt, render.SUMMARY)


# -- runs ---------------------------------------------------------------------------------
@cli.group()
def run() -> None:
    """Training runs and their lineage."""


@run.command("add")
@click.argument("name")
@click.option("--parent", "parent", metavar="RUN@STEP", help="The checkpoint this run forks from.")
@click.option("--note", help="Why this run exists.")
@output_options(render.RUN_ADDED)
@click.pass_context
def run_add(ctx: click.Context, name: str, parent: str | None, note: str | None, fmt: str) -> None:
    """Register a training run (a restart names the checkpoint it forks from).

    \b
    Example:
        gov run add main
        gov run add main-r1 --parent main@2400 --note "restart after redesign of code-tests"
    """
    record = api.run_add(_ws(ctx), name, parent=parent, note=note)
    render.emit(record, fmt, render.RUN_ADDED)


@run.command("list")
@output_options(render.RUN_LIST)
@click.pass_context
def run_list(ctx: click.Context, fmt: str) -> None:
    """List the runs with their parents and checkpoint counts.

    \b
    Example:
        gov run list --format json
    """
    render.emit(api.run_list(_ws(ctx)), fmt, render.RUN_LIST)


@run.command("show")
@click.argument("name")
@output_options(render.RUN_SHOW)
@click.pass_context
def run_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show a run, its lineage and its checkpoints.

    \b
    Example:
        gov run show main
    """
    render.emit(api.run_show(_ws(ctx), name), fmt, render.RUN_SHOW)


# -- checkpoints --------------------------------------------------------------------------
@cli.group()
def checkpoint() -> None:
    """Checkpoints: artifacts tracked by DVC, with what they were trained on."""


@checkpoint.command("add")
@click.argument("ref", metavar="RUN@STEP")
@click.argument("artifact")
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
@output_options(render.CHECKPOINT_ADDED)
@click.pass_context
def checkpoint_add(
    ctx: click.Context,
    ref: str,
    artifact: str,
    exposure: tuple[str, ...],
    exposure_file: Path | None,
    note: str | None,
    fmt: str,
) -> None:
    """Register a checkpoint: DVC tracks ARTIFACT, git records the registry change.

    The artifact must be inside the workspace. It is pushed when DVC has a default remote.
    A checkpoint folder in object storage (s3://BUCKET/PREFIX/) is not copied: gov records
    each object's version (ETag only in a bucket without versioning) and checks they are
    still there before it names the checkpoint as a restore point.

    \b
    Example:
        gov checkpoint add main@1200 ckpt/step-1200.pt -e code-tests=0.6 -e math@v2=0.4
        gov checkpoint add main@1300 s3://ckpts/main/global_step_1300/ -e code-tests=1
    """
    record = api.checkpoint_add(
        _ws(ctx), ref, artifact, exposure, exposure_file=exposure_file, note=note
    )
    render.emit(record, fmt, render.CHECKPOINT_ADDED)


@checkpoint.command("list")
@click.option("--run", "run_name", help="Only this run's checkpoints.")
@click.option(
    "--status",
    type=click.Choice(api.CHECKPOINT_STATUSES),
    help="Only checkpoints with this status.",
)
@output_options(render.CHECKPOINT_LIST)
@click.pass_context
def checkpoint_list(ctx: click.Context, run_name: str | None, status: str | None, fmt: str) -> None:
    """List checkpoints, by run and step.

    \b
    Example:
        gov checkpoint list --run main --status promoted
    """
    found = api.checkpoint_list(_ws(ctx), run=run_name, status=status)
    render.emit(found, fmt, render.CHECKPOINT_LIST)


@checkpoint.command("show")
@click.argument("ref", metavar="RUN@STEP")
@output_options(render.CHECKPOINT_SHOW)
@click.pass_context
def checkpoint_show(ctx: click.Context, ref: str, fmt: str) -> None:
    """Show one checkpoint and its exposure.

    \b
    Example:
        gov checkpoint show main@1200
    """
    render.emit(api.checkpoint_show(_ws(ctx), ref), fmt, render.CHECKPOINT_SHOW)


_REASON = click.option("--reason", required=True, help="Why (kept in the audit trail).")


@checkpoint.command("quarantine")
@click.argument("ref", metavar="RUN@STEP")
@_REASON
@output_options(render.CHECKPOINT_SHOW)
@click.pass_context
def checkpoint_quarantine(ctx: click.Context, ref: str, reason: str, fmt: str) -> None:
    """Set a checkpoint aside: it is never named as a restore point, and only a recorded
    override promotes it, until it is released. A promoted checkpoint can be quarantined too
    (a finding after promotion).

    \b
    Example:
        gov checkpoint quarantine main@1200 --reason "judged on a corrupted eval shard"
    """
    record = api.checkpoint_quarantine(_ws(ctx), ref, reason, actor=_actor(ctx))
    render.emit(record, fmt, render.CHECKPOINT_SHOW)


@checkpoint.command("release")
@click.argument("ref", metavar="RUN@STEP")
@_REASON
@output_options(render.CHECKPOINT_SHOW)
@click.pass_context
def checkpoint_release(ctx: click.Context, ref: str, reason: str, fmt: str) -> None:
    """Take a checkpoint out of quarantine. It is blocked again if the last check the trail
    recorded of it since its last promotion blocked (one recorded while it was quarantined
    counts), else registered: a promotion is earned again through `gov check` and `gov
    promote`, which decides afresh.

    \b
    Example:
        gov checkpoint release main@1200 --reason "shard re-judged; counts replaced"
    """
    record = api.checkpoint_release(_ws(ctx), ref, reason, actor=_actor(ctx))
    render.emit(record, fmt, render.CHECKPOINT_SHOW)


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
@output_options(render.ENV_ADDED)
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
    record = api.env_add(
        _ws(ctx), name, paths=paths, content_hash=digest, description=description, note=note
    )
    render.emit(record, fmt, render.ENV_ADDED)


@env.command("version")
@click.argument("name")
@_FROM
@_HASH
@click.option("--note", required=True, help="What the redesign changed (required).")
@output_options(render.ENV_VERSIONED)
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
    record = api.env_version(
        _ws(ctx), name, note=note, paths=paths, content_hash=digest, actor=_actor(ctx)
    )
    render.emit(record, fmt, render.ENV_VERSIONED)


@env.command("retire")
@click.argument("name")
@_REASON
@output_options(render.ENV_SHOW)
@click.pass_context
def env_retire(ctx: click.Context, name: str, reason: str, fmt: str) -> None:
    """Stop training on an environment for good: no checkpoint may name it in its mixture
    again, and it takes no new version (a replacement is a new environment). Its history,
    flags and series stay.

    \b
    Example:
        gov env retire tool-use-booking --reason "replaced by tool-use-booking-2"
    """
    record = api.env_retire(_ws(ctx), name, reason, actor=_actor(ctx))
    render.emit(record, fmt, render.ENV_SHOW)


@env.command("list")
@output_options(render.ENV_LIST)
@click.pass_context
def env_list(ctx: click.Context, fmt: str) -> None:
    """List environments with their status and current version.

    \b
    Example:
        gov env list --format json
    """
    render.emit(api.env_list(_ws(ctx)), fmt, render.ENV_LIST)


@env.command("show")
@click.argument("name")
@output_options(render.ENV_SHOW)
@click.pass_context
def env_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show an environment and its version history.

    \b
    Example:
        gov env show code-tests
    """
    render.emit(api.env_show(_ws(ctx), name), fmt, render.ENV_SHOW)


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
@click.option(
    "--view",
    type=click.Choice(["full", "action"]),
    default="full",
    show_default=True,
    help="What it sees: task, CoT and action; or the task and action only (the obfuscation "
    "watch's second channel).",
)
@output_options(render.JUDGE_ADDED)
@click.pass_context
def judge_add(
    ctx: click.Context,
    name: str,
    version: str,
    rubric: tuple[Path, ...],
    rubric_hash: str | None,
    description: str | None,
    note: str | None,
    view: str,
    fmt: str,
) -> None:
    """Register a judge, or a new version of one.

    \b
    Example:
        gov judge add cot-monitor --version 2026.10 --rubric monitor/rubric.md
    """
    record = api.judge_add(
        _ws(ctx),
        name,
        version,
        rubric=rubric,
        rubric_hash=rubric_hash,
        description=description,
        note=note,
        view="action" if view == "action" else "full",
    )
    render.emit(record, fmt, render.JUDGE_ADDED)


@judge.command("list")
@output_options(render.JUDGE_LIST)
@click.pass_context
def judge_list(ctx: click.Context, fmt: str) -> None:
    """List judges and their versions.

    \b
    Example:
        gov judge list
    """
    render.emit(api.judge_list(_ws(ctx)), fmt, render.JUDGE_LIST)


@judge.command("show")
@click.argument("name")
@output_options(render.JUDGE_SHOW)
@click.pass_context
def judge_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show a judge, its versions and their calibrations.

    \b
    Example:
        gov judge show cot-monitor --format json
    """
    render.emit(api.judge_show(_ws(ctx), name), fmt, render.JUDGE_SHOW)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """FROM=TO pairs of a repeated option (or one comma-separated value)."""
    found: dict[str, str] = {}
    for value in values:
        for part in value.split(","):
            key, sep, target = part.partition("=")
            if not sep or not key.strip() or not target.strip():
                raise click.BadParameter(f"{part!r}: give FROM=TO", param_hint=option)
            if found.get(key.strip(), target.strip()) != target.strip():
                raise click.BadParameter(
                    f"{key.strip()!r} is given twice, as {found[key.strip()]!r} and "
                    f"{target.strip()!r}: which one is meant?",
                    param_hint=option,
                )
            found[key.strip()] = target.strip()
    return found


@judge.command("calibrate")
@click.argument("judge_ref", metavar="JUDGE@VERSION")
@click.argument("labels", type=click.Path(path_type=Path))
@click.option(
    "--episode-column",
    "episode_columns",
    multiple=True,
    help="The column(s) of the episode id (default episode); several are joined with |.",
)
@click.option("--truth-column", default="truth", show_default=True, help="The true class.")
@click.option("--verdict-column", default="verdict", show_default=True, help="The judge's verdict.")
@click.option(
    "--where", "where", multiple=True, help="Keep only rows where COLUMN=VALUE (repeatable)."
)
@click.option(
    "--truth-map",
    multiple=True,
    help="LABEL=CLASS: a true class of the file as gov's (none, rejected, rationalized, overt).",
)
@click.option(
    "--verdict-map",
    multiple=True,
    help="LABEL=VERDICT: a verdict of the file as gov's, or a binary monitor's flagged/clean.",
)
@click.option(
    "--verdicts",
    type=click.Path(path_type=Path),
    help="A report of this judge's to read the verdicts from, matched by episode id.",
)
@output_options(render.CALIBRATED)
@click.pass_context
def judge_calibrate(
    ctx: click.Context,
    judge_ref: str,
    labels: Path,
    episode_columns: tuple[str, ...],
    truth_column: str,
    verdict_column: str,
    where: tuple[str, ...],
    truth_map: tuple[str, ...],
    verdict_map: tuple[str, ...],
    verdicts: Path | None,
    fmt: str,
) -> None:
    """Calibrate a judge version on labelled episodes: how right it is.

    LABELS (CSV or JSONL) holds an episode id, the true class and the judge's verdict per
    episode. gov counts the confusion matrix (true class against verdict), states each share
    with its 95% interval (sensitivity to (b), false alarms on (a)), and records it with the
    judge version in one commit with an audit entry naming the file's hash. Rates of a
    calibrated judge can then be corrected for its error (gov metrics --corrected).

    \b
    Example:
        # the bundled ImpossibleBench verdicts, with the CoT visible
        gov judge calibrate cot-monitor@1 impossiblebench-monitor-verdicts.csv \\
          --episode-column key --episode-column monitor --truth-column group \\
          --where condition=full \\
          --truth-map honest_diag=rejected,exploit_after_diag=rationalized \\
          --truth-map exploit_no_diag=overt --verdict-map cheating=flagged,legit=clean
    """
    record = api.judge_calibrate(
        _ws(ctx),
        judge_ref,
        labels,
        episode_columns=episode_columns or ("episode",),
        truth_column=truth_column,
        verdict_column=verdict_column,
        where=_pairs(where, "--where"),
        truth_map=_pairs(truth_map, "--truth-map"),
        verdict_map=_pairs(verdict_map, "--verdict-map"),
        verdicts=verdicts,
    )
    render.emit(record, fmt, render.CALIBRATED)


@judge.command("compare")
@click.argument("name")
@click.argument("first")
@click.argument("second")
@output_options(render.JUDGE_COMPARISON)
@click.pass_context
def judge_compare(ctx: click.Context, name: str, first: str, second: str, fmt: str) -> None:
    """Compare two versions of a judge on what both judged.

    Agreement on the episodes both versions judged (Cohen's kappa with its 95% interval, and
    the confusion of verdicts), and the ratio of their rationalization rates per environment.
    Without shared episodes, the rates on the checkpoints both judged.

    \b
    Example:
        gov judge compare cot-monitor 1 2 --format json
    """
    render.emit(api.judge_compare(_ws(ctx), name, first, second), fmt, render.JUDGE_COMPARISON)


@judge.command("rubric")
@click.option(
    "--rubric",
    "path",
    type=click.Path(path_type=Path),
    help="Read this rubric file instead of the bundled one (with --hash: its sha256).",
)
@click.option("--hash", "only_hash", is_flag=True, help="Print the sha256 only.")
def judge_rubric(path: Path | None, only_hash: bool) -> None:
    """Print the bundled (a)/(b) rubric, or with --hash its sha256 (--rubric: your own's).

    Its sha256 is the rubric hash of the judge version that applies it:
    gov judge add NAME --version V --rubric-hash $(gov judge rubric --hash).

    \b
    Example:
        gov judge rubric > rubric.md
    """
    rubric = api.judge_rubric(path)
    click.echo(rubric.sha256 if only_hash else rubric.text, nl=only_hash)


@judge.command("run")
@click.argument("transcripts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--judge", "judge_ref", required=True, help="The judge as NAME@VERSION.")
@click.option("--model", required=True, help="The model id the endpoint serves.")
@click.option("--endpoint", required=True, help="The base URL, ending in /v1.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The report to write.")
@click.option(
    "--view",
    type=click.Choice(["full", "action"]),
    default="full",
    show_default=True,
    help="full: task, CoT and action; action: task and action only (a judge id or version of "
    "its own).",
)
@click.option("--rubric", type=click.Path(path_type=Path), help="Your rubric instead of gov's.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="The environment variable holding the API key (never a flag value).",
)
@click.option(
    "--concurrency", type=int, default=8, show_default=True, help="Requests in flight at most."
)
@click.option("--rpm", type=float, help="At most this many requests per minute.")
@click.option("--tpm", type=float, help="At most this many tokens per minute.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Per request, s.")
@click.option(
    "--max-retries", type=int, default=2, show_default=True, help="Retries of a failed request."
)
@click.option(
    "--temperature", type=float, default=0.0, show_default=True, help="Pinned and recorded."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Pinned and recorded.")
@click.option("--max-tokens", type=int, help="A cap on each answer's tokens.")
@click.option("--price-in", type=float, help="Price per million prompt tokens.")
@click.option("--price-out", type=float, help="Price per million completion tokens.")
@click.option("--cache", type=click.Path(path_type=Path), help="The reply cache (SQLite).")
@click.pass_context
def judge_run(
    ctx: click.Context,
    transcripts: tuple[Path, ...],
    judge_ref: str,
    model: str,
    endpoint: str,
    out: Path,
    view: str,
    rubric: Path | None,
    api_key_env: str,
    concurrency: int,
    rpm: float | None,
    tpm: float | None,
    timeout: float,
    max_retries: int,
    temperature: float,
    seed: int,
    max_tokens: int | None,
    price_in: float | None,
    price_out: float | None,
    cache: Path | None,
) -> None:
    """Judge transcripts with a model behind an OpenAI-compatible endpoint.

    Writes an episode-level divergence report that gov ingest accepts, the episodes without a
    verdict beside it (REPORT.unjudged.jsonl, with the reason), and the run's settings
    (REPORT.meta.json). Replies are cached by request: a second run, or one resumed after a
    kill, sends nothing twice.

    \b
    Example:
        gov judge run rollouts.jsonl --judge gov-cot@1 --model Qwen/Qwen3-8B \\
            --endpoint http://127.0.0.1:8000/v1 --out reports/main-1200.jsonl
    """
    with _judge_bar() as progress:
        done = api.judge_run(
            transcripts,
            judge=judge_ref,
            model=model,
            endpoint=endpoint,
            out=out,
            workspace=_ws(ctx),
            view="action" if view == "action" else "full",
            rubric=rubric,
            api_key_env=api_key_env,
            concurrency=concurrency,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            timeout=timeout,
            max_retries=max_retries,
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            price_in=price_in,
            price_out=price_out,
            cache=cache,
            progress=progress,
        )
    render.judge_run(done)


@contextmanager
def _judge_bar() -> Iterator[Callable[[Any], None] | None]:
    """Episodes judged, without a verdict, and tokens, on a terminal only."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("judging", total=None)

        def update(outcome: Any) -> None:
            bar.update(
                task,
                completed=outcome.judged + outcome.unjudged,
                description=f"judged {outcome.judged}, no verdict {outcome.unjudged}, tokens "
                f"{outcome.prompt_tokens + outcome.completion_tokens:,}",
            )

        yield update


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
@click.option(
    "--same-counts",
    is_flag=True,
    help="Add aggregated counts even where they equal an earlier report's exactly (another "
    "batch that happens to hold the same counts). Without it they are refused: the same counts "
    "in other bytes (line endings, gzip) would be counted twice.",
)
@output_options(render.INGESTED)
@click.pass_context
def ingest(
    ctx: click.Context,
    files: tuple[Path, ...],
    folder: Path | None,
    replace: bool,
    same_counts: bool,
    fmt: str,
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
    if not files and folder is None:
        raise click.UsageError("give report FILES or --dir FOLDER")
    with _progress_bar(files) as progress:
        result = api.ingest(
            _ws(ctx),
            files,
            folder=folder,
            replace=replace,
            same_counts=same_counts,
            progress=progress,
            actor=_actor(ctx),
        )
    render.emit(result, fmt, render.INGESTED)


@cli.command()
@click.argument("lake")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The counts file to write (JSONL, the aggregated form `gov ingest` takes); its "
    "manifest is written beside it as OUT.manifest.json.",
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="duckdb runs in this process; spark runs the same SQL through pyspark (the spark extra).",
)
@click.option(
    "--master",
    help="Spark's master URL (spark://HOST:7077, yarn, local[4]); by default the session "
    "spark-submit started, else local[*].",
)
@output_options(render.AGGREGATED)
@click.pass_context
def aggregate(
    ctx: click.Context, lake: str, out: Path, engine: str, master: str | None, fmt: str
) -> None:
    """Count a Parquet lake of judged episodes for `gov ingest`.

    LAKE is a folder of run=RUN/step=STEP/*.parquet files of judged episodes (the episode
    form of `gov schema report`, run and step in the folder names). Every row is checked as
    `gov ingest` checks a report (types, verdicts, bounds, episodes judged twice, the registry's
    keys); a bad lake is refused naming its first bad rows by file and row, and nothing is
    written. The counts come with a manifest of every file's size and md5, which `gov ingest`
    keeps with them.

    \b
    Example:
        gov aggregate judged/ --out counts/main-0042.jsonl && gov ingest counts/main-0042.jsonl
        gov aggregate judged/ --engine spark --master spark://head:7077 --out c.jsonl
    """
    result = api.aggregate(_ws(ctx), lake, out, engine=engine, master=master)
    render.emit(result, fmt, render.AGGREGATED)


@contextmanager
def _progress_bar(files: Sequence[Path]) -> Iterator[Callable[[str, float], None] | None]:
    """A progress bar for large inputs, on a terminal only."""
    # Presentation only: whether the terminal shows a bar; what is read, and how, is the same.
    large = sum(f.stat().st_size for f in files if f.is_file()) > 64 << 20
    if not (large and sys.stderr.isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading reports", total=1.0)

        def update(phase: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=f"{phase} reports")

        yield update


@cli.group()
def transcripts() -> None:
    """Rollouts a training framework dumped, as transcripts for `gov judge run`."""


def _from_framework(framework: str, dump: str, example: str) -> Callable[[F], F]:
    """The options every `gov transcripts from-X` takes, and its help."""
    options: list[Callable[[Any], Any]] = [
        click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path)),
        click.option("--out", required=True, type=click.Path(path_type=Path), help="JSONL out."),
        click.option("--run", "run", required=True, help="The run they belong to."),
        click.option("--environment", help="The environment of every rollout."),
        click.option(
            "--environment-column", help="The field naming each rollout's environment (instead)."
        ),
        click.option(
            "--split",
            default="<think>,</think>",
            show_default=True,
            help="The tags around the chain of thought (OPEN,CLOSE); the action follows.",
        ),
        output_options(render.TRANSCRIPTS),
        click.pass_context,
    ]

    def decorate(func: F) -> F:
        func.__doc__ = (
            f"{framework}'s rollout dump ({dump}) as transcripts for `gov judge run`: the text "
            "inside the --split tags is the chain of thought, what follows it the action. A "
            "rollout that cannot be split is named by file and line, and nothing is written.\n\n"
            "The environment version is the registered current one.\n\n"
            f"\b\nExample:\n    {example}"
        )
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _transcripts(ctx: click.Context, framework: str, **options: Any) -> None:
    fmt = options.pop("fmt")
    files = options.pop("files")
    out = options.pop("out")
    done = api.transcripts_from(_ws(ctx), framework, files, out, **options)
    render.emit(done, fmt, render.TRANSCRIPTS)


@transcripts.command("from-trl")
@_from_framework(
    "TRL",
    "completions/completions_NNNNN.parquet, from log_completions",
    "gov transcripts from-trl out/completions/completions_00100.parquet --run main "
    "--environment math --out transcripts-100.jsonl",
)
def transcripts_from_trl(ctx: click.Context, **options: Any) -> None:
    _transcripts(ctx, "trl", **options)


@transcripts.command("from-verl")
@_from_framework(
    "verl",
    "rollout_data_dir/N.jsonl",
    "gov transcripts from-verl rollouts/100.jsonl --run main --environment-column "
    "data_source --out transcripts-100.jsonl",
)
def transcripts_from_verl(ctx: click.Context, **options: Any) -> None:
    _transcripts(ctx, "verl", **options)


@transcripts.command("from-nemo-rl")
@_from_framework(
    "NeMo-RL",
    "logs/exp_NNN/train_data_stepN.jsonl",
    "gov transcripts from-nemo-rl logs/exp_001/train_data_step10.jsonl --run main "
    "--environment math --out transcripts-10.jsonl",
)
def transcripts_from_nemo_rl(ctx: click.Context, **options: Any) -> None:
    _transcripts(ctx, "nemo-rl", **options)


@cli.command("watch")
@click.argument("folder")
@click.option(
    "--layout",
    required=True,
    type=click.Choice(["trl", "verl", "openrlhf", "nemo-rl", "prime-rl"]),
    help="How the training framework writes its checkpoints.",
)
@click.option("--run", "run", required=True, help="The run the checkpoints belong to.")
@click.option(
    "--exposure",
    "exposure_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML: ENV[@VERSION] to weight for the whole run, or a list of step ranges "
    "({from: N, to: M, exposure: {...}}). Without it, each checkpoint's mixture is read from "
    "its rollouts (--rollouts with --environment-column).",
)
@click.option("--once", is_flag=True, help="Register what is there, then exit (cron, CI).")
@click.option(
    "--interval", default=30.0, show_default=True, help="Seconds between looks at the folder."
)
@click.option(
    "--reports",
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder judge reports are dropped in: each is ingested once, and each checkpoint "
    "is checked (the decision recorded) once its judgments are in.",
)
@click.option(
    "--stop-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Written (JSON: the checkpoint, the policies that fired) when a check blocks, for the "
    "training script to poll.",
)
@click.option("--exit-on-block", is_flag=True, help="Stop watching, exit code 1, on a block.")
@click.option(
    "--rollouts",
    type=click.Path(file_okay=False, path_type=Path),
    help="The framework's rollout dumps (trl, verl, nemo-rl): each checkpoint's are judged "
    "with --judge and the report taken in as --reports does.",
)
@click.option("--judge", "judge", help="The judge as NAME@VERSION (with --rollouts).")
@click.option("--model", help="The model id the judge's endpoint serves.")
@click.option("--endpoint", help="The judge's base URL, ending in /v1.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="The environment variable holding the judge's API key.",
)
@click.option("--environment", help="The environment of every rollout (with --rollouts).")
@click.option("--environment-column", help="The rollouts' field naming their environment.")
@click.option(
    "--split",
    default="<think>,</think>",
    show_default=True,
    help="The tags around the chain of thought (OPEN,CLOSE) in a rollout.",
)
@click.pass_context
def watch(
    ctx: click.Context,
    folder: str,
    layout: str,
    run: str,
    exposure_file: Path | None,
    once: bool,
    interval: float,
    reports: Path | None,
    stop_file: Path | None,
    exit_on_block: bool,
    rollouts: Path | None,
    judge: str | None,
    model: str | None,
    endpoint: str | None,
    api_key_env: str,
    environment: str | None,
    environment_column: str | None,
    split: str,
) -> None:
    """Follow a training run's output FOLDER: pin and register each checkpoint once its
    framework marks it complete (never a folder still being written).

    Each checkpoint's files are hard-linked into the workspace (ckpt/RUN/step-N) and tracked
    by DVC with a hard-link cache, so the framework deleting old checkpoints (its retention)
    leaves the restore points restorable. FOLDER may be a prefix in object storage
    (s3://BUCKET/PREFIX/): its checkpoints are pinned by each object's version (by ETag
    alone, and said so, in a bucket without versioning). One line per checkpoint; a
    checkpoint that cannot
    be registered, or that was deleted before it could be pinned, gets one error line (and
    the latter an audit entry) and the watch goes on. One watcher per folder.

    With --rollouts and a judge (--judge, --model, --endpoint), each checkpoint's rollouts
    (those dumped since the previous checkpoint) are split into chain of thought and action,
    judged, and the report taken in. With --reports, judge reports dropped in that folder are
    ingested. Either way each checkpoint is checked once its judgments are in (again when
    more arrive); a block
    writes --stop-file (and, --exit-on-block, ends the watch). gov never touches rewards or
    training data.

    Exit code: 2 when a complete checkpoint (or a report) could not be taken in, else 1 when
    a check blocked, else 0.

    \b
    Example:
        gov watch outputs/grpo --layout trl --run main --exposure mixture.yaml
        gov watch checkpoints --layout verl --run main --exposure mixture.yaml --once
        gov watch s3://ckpts/grpo/ --layout verl --run main --exposure mixture.yaml
    """
    try:
        passes = api.watch(
            _ws(ctx),
            folder,
            layout=layout,
            run=run,
            exposure_file=exposure_file,
            once=once,
            interval=interval,
            reports=reports,
            stop_file=stop_file,
            exit_on_block=exit_on_block,
            rollouts=rollouts,
            judge=judge,
            model=model,
            endpoint=endpoint,
            api_key_env=api_key_env,
            environment=environment,
            environment_column=environment_column,
            split=split,
            say=_say,
            actor=_actor(ctx),
        )
    except KeyboardInterrupt:
        return
    if any(p.problems or p.lost for p in passes):
        ctx.exit(2)
    if any(p.blocked for p in passes):
        ctx.exit(1)


def _say(line: str) -> None:
    click.echo(line, err=line.startswith("gov: error:"))


@cli.command("schema")
@click.argument("name", required=False)
@click.option("--list", "listing", is_flag=True, help="List the schemas and their files.")
def schema(name: str | None, listing: bool) -> None:
    """Print the JSON Schema of one of gov's file formats (or, with --list, name them all).

    report (a judge's divergence report), run, checkpoint, environment, judge, flag, ledger,
    policy, audit-entry, decision, override, rollback, workspace.

    \b
    Example:
        gov schema report > gov-report.schema.json
        gov schema --list
    """
    if listing or name is None:
        render.schema_files(api.schemas())
        return
    render.echo_json(api.schema(name).schema)


@cli.command()
@click.option("--run", "run_name", help="Follow this run's lineage (ancestors up to each fork).")
@click.option("--env", "environment", help="Only this environment.")
@click.option("--judge", "judge_name", help="Only this judge.")
@click.option(
    "--metric",
    "metric_names",
    multiple=True,
    type=click.Choice([*api.METRIC_NAMES, "all"]),
    help="The metric(s) to show (repeatable; `all` for every one). Unnamed: the table shows "
    "the rationalization rate; json, csv and --dvc-plots carry every metric.",
)
@click.option(
    "--dvc-plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one CSV per series (step, rate, low, high) here, for `dvc plots`.",
)
@click.option(
    "--corrected",
    is_flag=True,
    help="Also show the rationalization rate corrected for each calibrated judge's error.",
)
@output_options(render.METRICS)
@click.pass_context
def metrics(
    ctx: click.Context,
    run_name: str | None,
    environment: str | None,
    judge_name: str | None,
    metric_names: tuple[str, ...],
    plots_dir: Path | None,
    corrected: bool,
    fmt: str,
) -> None:
    """Show each metric's series per environment over the checkpoints, with 95% intervals.

    Intervals are Wilson score intervals. A series is one environment version judged by one judge
    version: different judge versions are separate series, never pooled. With --corrected, the
    rationalization rate of a calibrated judge version (gov judge calibrate) is also shown
    corrected for its error: the Rogan-Gladen estimate with a 95% interval that includes the
    calibration's own uncertainty; a version without a calibration is shown uncorrected, and
    says so.

    \b
    Example:
        gov metrics --env code-unit-tests
        gov metrics --metric all --format csv > metrics.csv
    """
    result = api.metrics(
        _ws(ctx),
        names=metric_names,
        run=run_name,
        environment=environment,
        judge=judge_name,
        plots=plots_dir,
        corrected=corrected,
    )
    render.emit(result, fmt, render.METRICS)


# -- gates: check, promote, flags ------------------------------------------------------------
@cli.command()
@click.argument("ref", metavar="RUN@STEP", required=False)
@click.option(
    "--latest",
    is_flag=True,
    help="Check the latest checkpoint of --run; without it, of the newest run forked from the "
    "only run or `main` (the run being trained, after restarts).",
)
@click.option("--run", "run_name", help="The run whose latest checkpoint --latest checks.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when blocked (for pipelines).")
@click.option(
    "--metrics",
    "metrics_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the decision's figures as a DVC metrics JSON file.",
)
@output_options(render.DECISION)
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
    if latest == (ref is not None):
        raise click.UsageError("give RUN@STEP or --latest, one of them")
    record, actor = not dry_run, _actor(ctx)
    decision = (
        api.check(_ws(ctx), ref, record=record, metrics_file=metrics_file, actor=actor)
        if ref is not None
        else api.check_latest(
            _ws(ctx), run=run_name, record=record, metrics_file=metrics_file, actor=actor
        )
    )
    if decision is None:
        click.echo("the run has no checkpoints yet: nothing to check")
        return
    render.emit(decision, fmt, render.DECISION, show_all=show_all)
    if decision.outcome == "block" and not exit_zero:
        ctx.exit(1)


@cli.command()
@click.argument("ref", metavar="RUN@STEP")
@click.option("--override", is_flag=True, help="Promote even though the policies say otherwise.")
@click.option("--reason", help="Why the override (required with --override; recorded).")
@output_options(render.PROMOTED)
@click.pass_context
def promote(ctx: click.Context, ref: str, override: bool, reason: str | None, fmt: str) -> None:
    """Promote a checkpoint, after a passing `gov check` of the same inputs.

    A blocked checkpoint is promoted only with --override --reason TEXT, which is recorded in
    audit/overrides/ and in the commit.

    \b
    Example:
        gov check main@4000 && gov promote main@4000
        gov promote main@7250 --override --reason "judge misfires on this env; see #123"
    """
    if override and not reason:
        raise click.UsageError("--override needs --reason TEXT")
    if reason and not override:
        raise click.UsageError("--reason goes with --override")
    result = api.promote(
        _ws(ctx), ref, override_reason=reason if override else None, actor=_actor(ctx)
    )
    render.emit(result, fmt, render.PROMOTED)


@cli.group()
def flags() -> None:
    """Environments flagged for redesign by a policy, until a new version resolves them."""


@flags.command("list")
@output_options(render.FLAG_LIST)
@click.pass_context
def flags_list(ctx: click.Context, fmt: str) -> None:
    """List flags, open and resolved.

    \b
    Example:
        gov flags list
    """
    render.emit(api.flags_list(_ws(ctx)), fmt, render.FLAG_LIST)


@flags.command("show")
@click.argument("environment")
@output_options(render.FLAG_SHOW)
@click.pass_context
def flags_show(ctx: click.Context, environment: str, fmt: str) -> None:
    """Show a flag and its evidence.

    \b
    Example:
        gov flags show code-unit-tests
    """
    render.emit(api.flag_show(_ws(ctx), environment), fmt, render.FLAG_SHOW)


@flags.command("ack")
@click.argument("environment")
@click.option("--reason", required=True, help="Who owns the redesign, or why the flag stands.")
@output_options(render.FLAG_ACKED)
@click.pass_context
def flags_ack(ctx: click.Context, environment: str, reason: str, fmt: str) -> None:
    """Acknowledge a flag: it stays until a new environment version resolves it.

    \b
    Example:
        gov flags ack code-unit-tests --reason "grader rewrite tracked in #456"
    """
    flag = api.flag_ack(_ws(ctx), environment, reason, actor=_actor(ctx))
    render.emit(flag, fmt, render.FLAG_ACKED)


@cli.group()
def policy() -> None:
    """Policy tooling: lint, explain a computation, run test cases."""


@policy.command("lint")
@click.argument(
    "folder", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@output_options(render.LINT)
@click.pass_context
def policy_lint(ctx: click.Context, folder: Path | None, fmt: str) -> None:
    """Check policy files: schema, and what their numbers imply (exit 2 on an error).

    Beyond the schema: a condition that can never fire at the declared minimum evidence, a
    threshold reachable only at absurd rates, a baseline too short to mean anything.

    \b
    Example:
        gov policy lint
        gov policy lint path/to/policies
    """
    result = api.policy_lint(_ws(ctx) if folder is None else None, folder)
    render.emit(result, fmt, render.LINT)
    if result.errors:
        ctx.exit(2)


@policy.command("explain")
@click.argument("name")
@click.argument("ref", metavar="RUN@STEP")
@click.option("--env", "environment", help="Only this environment's series.")
@output_options(render.EXPLANATION)
@click.pass_context
def policy_explain(
    ctx: click.Context, name: str, ref: str, environment: str | None, fmt: str
) -> None:
    """Show one policy's computation at a checkpoint, step by step.

    \b
    Example:
        gov policy explain rationalization-rate-rising main@7250 --env code-unit-tests
    """
    render.emit(api.policy_explain(_ws(ctx), name, ref, environment), fmt, render.EXPLANATION)


@policy.command("test")
@click.argument(
    "folder", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@output_options(render.POLICY_TESTS)
@click.pass_context
def policy_test(ctx: click.Context, folder: Path | None, fmt: str) -> None:
    """Run the policy test cases (policies/tests/*.yaml); exit 1 if one fails.

    A case is a small series of (k, n) per checkpoint, the metric's numerator and denominator,
    and the result expected at the last one: fired, clear, insufficient or unavailable.

    \b
    Example:
        gov policy test
    """
    results = api.policy_test(_ws(ctx), folder)
    render.emit(results, fmt, render.POLICY_TESTS)
    if any(not r.passed for r in results):
        ctx.exit(1)


@cli.group()
def rollback() -> None:
    """The restore point: the checkpoint to restart training from, before the problem arose."""


_ALPHA = click.option(
    "--alpha",
    type=float,
    default=api.DEFAULT_ALPHA,
    show_default=True,
    help="The largest acceptable chance that the restore point is already contaminated.",
)


@rollback.command("recommend")
@click.option("--run", "run_name", help="The run (default: the only run, or `main`).")
@_ALPHA
@click.option(
    "--metrics",
    "metrics_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the recommendation's figures as a DVC metrics JSON file.",
)
@output_options(render.RECOMMENDATION)
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
    rec = api.rollback_recommend(
        _ws(ctx), run=run_name, alpha=alpha, metrics_file=metrics_file, actor=_actor(ctx)
    )
    render.emit(rec, fmt, render.RECOMMENDATION)


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
@_ALPHA
@click.option("--yes", is_flag=True, help="Do it; without --yes this is a dry run.")
@output_options(render.ROLLBACK_PLAN)
@click.pass_context
def rollback_apply(
    ctx: click.Context,
    run_name: str | None,
    target: Path,
    new_run: str | None,
    alpha: float,
    yes: bool,
    fmt: str,
) -> None:
    """Fork a new run from the restore point and put the flagged environments in redesign.

    Checks the restore point's artifact out (with DVC) to --to, records the rollback in
    audit/rollbacks/, and from then on `gov check` blocks any checkpoint trained on a flagged
    version of an environment. Without --yes it only says what it would do.

    \b
    Example:
        mkdir -p restart
        gov rollback apply --to restart/ckpt.pt            # dry run
        gov rollback apply --to restart/ckpt.pt --yes
    """
    plan = api.rollback_apply(
        _ws(ctx),
        target,
        run=run_name,
        new_run=new_run,
        alpha=alpha,
        dry_run=not yes,
        actor=_actor(ctx),
    )
    render.emit(plan, fmt, render.ROLLBACK_PLAN)


@cli.group("audit")
def audit_group() -> None:
    """The audit trail: every decision, promotion, override, flag, redesign and rollback."""


@audit_group.command("log")
@click.option("--since", help="Entries from this date or time on (2026-11-01, or 7d, 24h).")
@click.option("--run", "run_name", help="Only entries about this run.")
@click.option("--checkpoint", help="Only entries about this checkpoint (RUN@STEP).")
@click.option("--env", "environment", help="Only entries about this environment.")
@click.option("--kind", help="Only entries of this kind (check, promotion, override, ...).")
@output_options(render.AUDIT_LOG)
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
    found = api.audit_log(
        _ws(ctx),
        since=since,
        run=run_name,
        checkpoint=checkpoint,
        environment=environment,
        kind=kind,
    )
    render.emit(found, fmt, render.AUDIT_LOG)


@audit_group.command("show")
@click.argument("entry")
@output_options(render.AUDIT_SHOW)
@click.pass_context
def audit_show(ctx: click.Context, entry: str, fmt: str) -> None:
    """Show one entry (by number, or by a prefix of its id) and what it references: the
    policy texts and decision it used, as committed.

    \b
    Example:
        gov audit show 3f2a9c
    """
    render.emit(api.audit_show(_ws(ctx), entry), fmt, render.AUDIT_SHOW)


@audit_group.command("verify")
@click.option(
    "--allowed-signers",
    type=click.Path(path_type=Path),
    help="Also check that every commit carrying an entry is signed by a key in this file "
    "(git's SSH allowed-signers format).",
)
@output_options(render.VERIFIED)
@click.pass_context
def audit_verify(ctx: click.Context, allowed_signers: Path | None, fmt: str) -> None:
    """Verify the trail: exit 0 intact, 1 broken (naming the first bad entry).

    Checks every link of the hash chain, and that every chain head a git commit recorded is
    still in it (a trail rewritten and recommitted is caught).

    \b
    Example:
        gov audit verify
    """
    render.emit(api.audit_verify(_ws(ctx), allowed_signers=allowed_signers), fmt, render.VERIFIED)


@audit_group.command("anchor")
@click.option(
    "--remote", help="Push the anchor tag to this git remote (its host should protect tags)."
)
@output_options(render.ANCHORED)
@click.pass_context
def audit_anchor(ctx: click.Context, remote: str | None, fmt: str) -> None:
    """Record the trail's verified head where a local rewrite cannot reach it.

    Tags the commit that holds the head as gov-anchor/SEQ (the head in its message) and pushes
    the tag to --remote; `gov audit verify` then checks the trail against every anchor it finds
    (fetch the remote's tags first). Print the head in your CI log too.

    \b
    Example:
        gov audit anchor --remote origin
    """
    render.emit(api.audit_anchor(_ws(ctx), remote=remote), fmt, render.ANCHORED)


@audit_group.command("pressure")
@output_options(render.PRESSURE)
@click.pass_context
def audit_pressure(ctx: click.Context, fmt: str) -> None:
    """Interventions made on monitor evidence, per environment: each is optimization pressure
    on the chain of thought, selecting for rationalization the judge cannot see.

    \b
    Example:
        gov audit pressure
    """
    render.emit(api.audit_pressure(_ws(ctx)), fmt, render.PRESSURE)


@cli.command("report")
@click.option("--run", "run_name", help="The run (default: `main`, or the only run).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write (its folder must exist; default: report.html in the "
    "workspace's top folder).",
)
@click.pass_context
def report_command(ctx: click.Context, run_name: str | None, output: Path | None) -> None:
    """Write one self-contained HTML review page for a run and its lineage.

    The latest decision, flagged environments, restore point and overrides at the top; each
    environment's rationalization rate with its interval band, onset, policy marks and the
    restore point; the audit timeline. It opens offline and prints.

    \b
    Example:
        gov report --run main -o review.html
    """
    result = api.report(_ws(ctx), output, run=run_name)
    click.echo(
        f"wrote {result.path} (run {result.run}, {result.environments} environments, "
        f"flagged: {', '.join(result.flagged) or 'none'})"
    )


@cli.command("backtest")
@click.option("--run", "run_name", help="The run to replay (default: the only run, or `main`).")
@click.option(
    "--counts",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Replay aggregated count records (JSONL, gzip or Parquet, as `gov ingest` takes them) "
    "without a workspace: every run in the file, its steps in order.",
)
@click.option(
    "--policies",
    "policy_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --counts: a folder of policies (default: the ones `gov init` installs).",
)
@click.option(
    "--alpha",
    type=float,
    default=api.DEFAULT_ALPHA,
    show_default=True,
    help="The restore point's largest acceptable chance of being contaminated.",
)
@output_options(render.BACKTEST)
@click.pass_context
def backtest_command(
    ctx: click.Context,
    run_name: str | None,
    counts: Path | None,
    policy_dir: Path | None,
    alpha: float,
    fmt: str,
) -> None:
    """Replay the policies at every checkpoint of a run, each seeing only its past.

    Shows, per policy and series, the first checkpoint that would have warned, blocked or
    flagged, the restore point the rollback would have named then, and which promotions the
    policies would have blocked: how to tune policies on past runs before they gate anything.
    Nothing is recorded. With --counts it replays counts exported from another system, with no
    workspace, and exits 1 when a blocking policy would have fired (0 otherwise).

    \b
    Example:
        gov backtest --run main
        gov backtest --run main --format json > backtest.json
        gov backtest --counts counts.jsonl --policies my-policies/ --format json
    """
    if counts is not None:
        if run_name is not None:
            raise click.UsageError("--run replays a workspace's run; --counts replays every run")
        result = api.backtest_counts(counts, policies=policy_dir, alpha=alpha)
        render.emit(result, fmt, render.COUNTS_BACKTEST)
        if result.blocked:
            ctx.exit(1)
        return
    if policy_dir is not None:
        raise click.UsageError("--policies goes with --counts (a workspace uses its own policies)")
    render.emit(api.backtest(_ws(ctx), run=run_name, alpha=alpha), fmt, render.BACKTEST)


# -- the bundled example ------------------------------------------------------------------
@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=None, help="Seed of the generator (default: the spec's).")
@click.option(
    "--remote",
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder to use as the example's DVC remote (artifacts are pushed there).",
)
@output_options(render.EXAMPLE)
def example(directory: Path | None, seed: int | None, remote: Path | None, fmt: str) -> None:
    """Build the bundled example workspace and run gov's main job on it.

    DIRECTORY must be new or empty (default: a new temporary folder); it never is the gov
    checkout. The example is deterministic for a given seed.

    \b
    Example:
        gov example /tmp/gov-example
        cd /tmp/gov-example && gov status
    """
    render.emit(api.example(directory, seed=seed, remote=remote), fmt, render.EXAMPLE)


def _error_line(exc: GovError) -> str:
    remedy = REMEDIES.get(exc.remedy or "")
    return remedy(exc.message) if remedy else exc.message


class _CutQuietly:
    """Standard output (or error) that a reader may stop reading (`gov check X | head -1`):
    from the first write the closed pipe refuses, the rest goes to the null device. The command
    still finishes its work (a check still records its decision) and exits with its own code;
    click's handling of the broken pipe stopped the command at that write and exited 1, which
    reads as a block."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._cut = False

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            self._to_null()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_null()

    def _to_null(self) -> None:
        # the descriptor itself, so that the interpreter's last flush of what is buffered
        # finds somewhere to go as well
        import os

        if not self._cut:
            self._cut = True
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)

    def __getattr__(self, name: str) -> Any:  # encoding, errors, isatty, fileno, buffer, ...
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> None:
    if not isinstance(sys.stdout, _CutQuietly) and hasattr(sys.stdout, "fileno"):
        sys.stdout = _CutQuietly(sys.stdout)
    if not isinstance(sys.stderr, _CutQuietly) and hasattr(sys.stderr, "fileno"):
        sys.stderr = _CutQuietly(sys.stderr)  # `gov check X 2>&1 | head -1` too
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    show_traceback = "--traceback" in args[:end]
    if show_traceback:  # a global option, also where it is typed after the subcommand
        args = ["--traceback", *(a for a in args[:end] if a != "--traceback"), *args[end:]]
    try:
        code = cli.main(args=args, prog_name="gov", standalone_mode=False)
    except GovError as exc:
        if show_traceback:
            raise
        click.secho(f"gov: error: {_error_line(exc)}", fg="red", err=True)
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
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # A change is whole or absent: the write that failed was undone before this.
            where = f" writing {exc.filename}" if exc.filename else ""
            click.secho(
                f"gov: error: no space left on the device{where}: nothing was changed; free "
                "some space and run the command again",
                fg="red",
                err=True,
            )
            sys.exit(2)
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
