"""The ``bcemb`` command line: a thin wrapper around the library.

``bcemb --help`` stays fast: this module imports typer only; torch, PyG, pandas and FastAPI are
imported inside the commands that need them, and the ``adapt``, ``store`` and ``serve``
commands are loaded when invoked (:data:`_LAZY_COMMANDS`). Errors end in one line: usage
errors exit with status 2, failures (our errors, ValueError, OSError, ...) with status 1.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from bcemb.cli_options import one_of

#: Commands loaded on first use: name -> ("module:attribute", short help for ``bcemb --help``).
_LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "adapt": ("bcemb.compat.cli:adapt", "Fit B: NEW -> OLD post hoc on shared ids, report, publish."),
    "store": ("bcemb.store.cli:app", "The keep-latest embedding store."),
    "serve": ("bcemb.serve.cli:serve", "Serve ver-j compatible embeddings of a store over HTTP."),
}


def _is_failure(err: BaseException) -> bool:
    """Errors that end a command with a one-line message (exit 1) instead of a traceback."""
    if isinstance(err, (ValueError, KeyError, OSError)):
        return True
    store_errors = sys.modules.get("bcemb.store.errors")  # loaded whenever one was raised
    return store_errors is not None and isinstance(err, store_errors.StoreError)


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and type(err).__str__ is KeyError.__str__ and err.args:
        return str(err.args[0])  # KeyError repr-quotes its message
    return str(err) or type(err).__name__


def _load_command(name: str) -> TyperCommand | TyperGroup:
    target, short = _LAZY_COMMANDS[name]
    module, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ImportError as err:
        typer.echo(f"error: `bcemb {name}` is not available ({err}); pip install 'bcemb[{name}]'", err=True)
        raise typer.Exit(1) from None
    if isinstance(obj, typer.Typer):
        cmd = typer.main.get_group(obj)
        cmd.help = short
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(obj)
        cmd = typer.main.get_command(single)
    cmd.name = name
    return cmd


class _Root(TyperGroup):
    """The root group: lazily loaded commands and the one-line error boundary."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *_LAZY_COMMANDS]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name in _LAZY_COMMANDS:
            # Only the help listing asks here (resolve_command loads the real command): a
            # placeholder with the short help keeps ``bcemb --help`` free of heavy imports.
            short = _LAZY_COMMANDS[cmd_name][1]
            return TyperCommand(cmd_name, help=short, short_help=short)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        if args and args[0] in _LAZY_COMMANDS:
            return args[0], _load_command(args[0]), args[1:]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as err:  # the CLI boundary; anything else keeps its traceback
            if not _is_failure(err):
                raise
            typer.secho(f"error: {_message(err)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None


app = typer.Typer(cls=_Root, help="bcemb: backward compatible embeddings.", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from bcemb.version import __version__

        typer.echo(f"bcemb {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """bcemb: backward compatible embeddings."""
app.add_typer(data_app, name="data")

logger = logging.getLogger("bcemb")

# The fixed sets behind the options, listed here so that ``--help`` shows them without importing
# the library (tests/test_cli_choices.py keeps them equal to the registries).
DATASET_CHOICES = ("ml-100k", "amazon", "synthetic", "table")
PROFILE_CHOICES = ("quick", "paper")
METHOD_CHOICES = (
    "fix-m0", "finetune-m0", "non-bc", "post-lin-sloss", "post-lin-mloss", "joint-notrans",
    "joint-lin-sloss", "bc-aligner", "bc-aligner-orth", "bc-aligner-lowrank", "bc-aligner-mlp",
    "post-procrustes",
)


def _device(value: str) -> str:
    if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r} is not a device; use cpu, cuda, cuda:N or auto", param_hint="--device")
    return value


def _method(value: str) -> str:
    from bcemb.methods import METHODS

    try:
        return METHODS.canonical(value)
    except KeyError as err:
        raise typer.BadParameter(str(err), param_hint="--method") from None


DatasetOpt = Annotated[str, typer.Option("--dataset", callback=one_of("--dataset", DATASET_CHOICES), help=f"Dataset source: {' | '.join(DATASET_CHOICES)} (table: your own log, see --log).")]
LogOpt = Annotated[Optional[Path], typer.Option(help="--dataset table: the interaction log (.csv, .tsv, .csv.gz or .parquet).")]
LogOptionOpt = Annotated[Optional[list[str]], typer.Option("--log-option", help="--dataset table: KEY=VALUE, repeatable. Columns: user=, item=, time= (defaults user_id, item_id, timestamp), rating= (optional), feature= (an item-feature column; repeat for several); settings: sep= (feature value separator, default |), time-format= (strftime; default numbers or ISO 8601).")]
ReviewsOpt = Annotated[Optional[Path], typer.Option(help="Amazon reviews file (JSON lines, .gz ok).")]
MetaOpt = Annotated[Optional[Path], typer.Option(help="Amazon metadata file.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting: key=value (train.epochs=10, lam=8, sizes=2x64,2x80,3x96,3x112,3x128).")]
SyntheticOpt = Annotated[Optional[list[str]], typer.Option(help="Generator option key=value (num_users=5000).")]
ProfileOpt = Annotated[str, typer.Option(callback=one_of("--profile", PROFILE_CHOICES), help=f"Defaults for sizes, training and consumers: {' | '.join(PROFILE_CHOICES)}.")]
SeedOpt = Annotated[int, typer.Option(help="Base seed; every model and consumer seed derives from it.")]
DeviceOpt = Annotated[str, typer.Option(callback=_device, help="cpu, cuda, cuda:N or auto (CUDA when present).")]
MethodOpt = Annotated[str, typer.Option(callback=_method, help=f"One of: {', '.join(METHOD_CHOICES)}.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose/--quiet")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("bcemb").setLevel(logging.INFO if verbose else logging.WARNING)


def _dataset_options(
    dataset: str, reviews: Path | None, meta: Path | None, synth: list[str] | None,
    log: Path | None = None, log_options: list[str] | None = None,
) -> dict:
    from bcemb.data import DATASETS

    name = DATASETS.canonical(dataset)
    opts: dict = {}
    if name == "table":
        from bcemb.data.datasets.table import parse_log_options

        if log is None:
            raise typer.BadParameter("--dataset table needs --log PATH (a CSV or Parquet interaction log)")
        try:
            return {"log": str(log), **parse_log_options(log_options or [])}
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--log-option") from None
    if log is not None or log_options:
        raise typer.BadParameter("--log and --log-option are for --dataset table")
    if name == "amazon":
        if reviews is None:
            raise typer.BadParameter("--dataset amazon needs --reviews PATH (and usually --meta PATH)")
        opts["reviews"] = reviews
        if meta is not None:
            opts["meta"] = meta
    for item in synth or []:
        key, _, value = item.partition("=")
        if not _:
            raise typer.BadParameter(f"--synthetic expects key=value, got {item!r}")
        try:
            opts[key.replace("-", "_")] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: {value!r} is not a number", param_hint="--synthetic") from None
    return opts


def _lams(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint="--lams") from None
    if any(not v >= 0 for v in values):
        raise typer.BadParameter(f"lambdas must be >= 0, got {text!r}", param_hint="--lams")
    return values


def _interrupted(out: Path) -> None:
    """Ctrl-C: say what is kept and how to go on (finished versions and the last checkpoint)."""
    typer.echo(
        f"\ninterrupted. Finished versions and the checkpoint of the version in progress (saved at "
        f"every evaluation) are kept in {out}; run the same command again to resume.",
        err=True,
    )
    raise typer.Exit(130)


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@data_app.command("stats")
def data_stats(
    dataset: DatasetOpt = "ml-100k",
    reviews: ReviewsOpt = None,
    meta: MetaOpt = None,
    synthetic: SyntheticOpt = None,
    log: LogOpt = None,
    log_option: LogOptionOpt = None,
    times: Annotated[str, typer.Option(help="t_0..t_K and the closing time, comma separated.")] = "0.5,0.6,0.7,0.8,0.9,1.0",
) -> None:
    """Print users, items, edges and the consumer-task labels of every time slice."""
    from bcemb.data import DATASETS, ConsumerTasks, TimeSlices, load_dataset
    from bcemb.data.stats import slice_table

    try:
        graph = load_dataset(DATASETS.canonical(dataset), **_dataset_options(dataset, reviews, meta, synthetic, log, log_option))
        slices = TimeSlices(graph, [float(t) for t in times.split(",")])
        table = slice_table(slices, ConsumerTasks(slices))
    except (ValueError, KeyError, OSError) as err:
        _fail(err)
    typer.echo(f"{graph.name}: {graph.num_users:,} users, {graph.num_items:,} items, {graph.num_edges:,} edges")
    typer.echo(table)


def _config(profile: str, seed: int | None, device: str, sets: list[str] | None, **fields):  # noqa: ANN003, ANN202
    from bcemb.experiments.config import profile_config
    from bcemb.seeding import resolve_seed

    overrides = dict(fields)
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}")
        overrides[key] = value
    return profile_config(profile, seed=resolve_seed(seed), device=device, **overrides)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run folder (rerun to resume).")],
    method: MethodOpt = "bc-aligner",
    lam: Annotated[Optional[float], typer.Option(min=0.0, help="Alignment weight lambda of the joint methods (default: the configuration's `lam`, 16; same as --set lam=...).")] = None,
    dataset: DatasetOpt = "ml-100k",
    reviews: ReviewsOpt = None,
    meta: MetaOpt = None,
    synthetic: SyntheticOpt = None,
    log: LogOpt = None,
    log_option: LogOptionOpt = None,
    profile: ProfileOpt = "quick",
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    sets: SetOpt = None,
    verbose: VerboseOpt = True,
) -> None:
    """Train versions 0..K of one method and write models, transforms, embeddings and metrics."""
    _setup_logging(verbose)
    from bcemb.data import load_dataset
    from bcemb.experiments.context import ExperimentData
    from bcemb.experiments.training_run import train_method
    from bcemb.methods import build_method
    from bcemb.utils import resolve_device

    try:
        cfg = _config(profile, seed, device, sets, dataset=dataset, lam=lam,
                      dataset_options=_dataset_options(dataset, reviews, meta, synthetic, log, log_option))
        m = build_method(method, lam=cfg.lam)
        data = ExperimentData(load_dataset(cfg.dataset, **cfg.dataset_options), times=cfg.times,
                              device=resolve_device(cfg.device))
        arts = train_method(data, m, cfg, out, show_progress=verbose)
    except KeyboardInterrupt:
        _interrupted(out)
    except (ValueError, KeyError, OSError) as err:
        _fail(err)
    for a in arts:
        shown = ", ".join(f"{n[:1].upper()}{n[1:]} {v:.4f}" for n, v in a.metrics.items() if n.endswith("@50")) or a.metrics
        typer.echo(f"version {a.k}: {shown} (best epoch {a.best_epoch})")
    typer.echo(f"run written to {out}")


@app.command()
def benchmark(
    out: Annotated[Path, typer.Option(help="Benchmark folder (rerun to resume).")],
    dataset: DatasetOpt = "ml-100k",
    reviews: ReviewsOpt = None,
    meta: MetaOpt = None,
    synthetic: SyntheticOpt = None,
    log: LogOpt = None,
    log_option: LogOptionOpt = None,
    profile: ProfileOpt = "quick",
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods (default: all eight).")] = None,
    lams: Annotated[str, typer.Option(help="Lambda sweep for the joint methods; '' for none.")] = "1,2,4,8,16,32",
    lam: Annotated[Optional[float], typer.Option(min=0.0, help="The default lambda (default: the configuration's `lam`, 16).")] = None,
    seed: SeedOpt = 0,
    seeds: Annotated[Optional[str], typer.Option(
        help="Training seeds, '0,1,2', or a count ('5' = 0..4): one benchmark per seed under OUT/seed_<s>; "
             "`bcemb report OUT` then gives mean +- 95% t-intervals.")] = None,
    device: DeviceOpt = "cpu",
    sets: SetOpt = None,
    verbose: VerboseOpt = True,
) -> None:
    """Train every method, train the consumers, compute the three metrics (Table 3, Figures 3-5)."""
    _setup_logging(verbose)
    from bcemb.evaluation.summary import TABLE3_METRICS, over_seeds, table3
    from bcemb.experiments.benchmark import parse_seeds, run_benchmark, run_seeds

    try:
        cfg = _config(profile, seed, device, sets, dataset=dataset, lam=lam,
                      dataset_options=_dataset_options(dataset, reviews, meta, synthetic, log, log_option))
        kwargs = {"methods": methods.split(",") if methods else None, "lams": _lams(lams), "show_progress": verbose}
        if seeds is not None:
            per_seed = run_seeds(cfg, out, parse_seeds(seeds), **kwargs)
            table = over_seeds({s: table3(r) for s, r in per_seed.items()}, ["method", "lam"], TABLE3_METRICS)
        else:
            table = table3(run_benchmark(cfg, out, **kwargs))
    except KeyboardInterrupt:
        _interrupted(out)
    except (ValueError, KeyError, OSError) as err:
        _fail(err)
    typer.echo(table.round(3).to_string(index=False))
    typer.echo(f"results written to {out}; next: bcemb report {out}")


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="A benchmark folder.")],
    lam: Annotated[Optional[float], typer.Option(help="The lambda of Table 3 (default: the one the benchmark used).")] = None,
) -> None:
    """Write report.md with Table 3 and Figures 3-5 (PNG) from a benchmark folder."""
    from bcemb.evaluation.report import write_report

    try:
        path = write_report(folder, lam=lam)
    except (ValueError, KeyError, OSError) as err:
        _fail(err)
    typer.echo(f"report written to {path}")


@app.command()
def chains(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of `bcemb train` (any methods and seeds).")],
    out: Annotated[Path, typer.Option(help="Folder for chains.csv, hops.csv and the two figures.")],
) -> None:
    """Alignment error of B_{j+1}..B_k(z_k) against z_j for every pair j < k, per run; heat maps and error vs hops."""
    from bcemb.evaluation.chains import hop_summary, plot_heatmaps, plot_hops
    from bcemb.experiments.long_chains import chain_frame
    from bcemb.methods import method_info

    try:
        frame = chain_frame(runs)
        labels = {m: method_info(m).label for m in frame["method"].unique()}
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "chains.csv", index=False)
        summary = hop_summary(frame)
        summary.to_csv(out / "hops.csv", index=False)
        plot_heatmaps(frame, out / "chains_heatmap.png", labels=labels)
        plot_hops(summary, out / "chains_hops.png", labels=labels)
    except (ValueError, KeyError, OSError) as err:
        _fail(err)
    typer.echo(summary.round(4).to_string(index=False))
    typer.echo(f"written to {out}")


def main() -> None:
    """Entry point of the ``bcemb`` console script."""
    app(prog_name="bcemb")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
