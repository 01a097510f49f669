"""Command line: ``rnnstudy config|train|sweep|status|report|diagnose|predict|prescreen|sync``, a thin shell."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from rnnstudy.errors import ConfigError, stop_on_signals, stop_reason, stop_status
from rnnstudy.study.launch import LAUNCHERS, ClusterOptions

EXIT_CONFIG = 2


def cmd_train(args: argparse.Namespace) -> int:
    """Run one training run and print where its results are."""
    from rnnstudy.study.experiment import load_experiment, run_config

    experiment, overrides = _experiment_and_overrides(args)
    exp = load_experiment(experiment) if experiment else None
    cfg = run_config(exp, overrides)
    from rnnstudy.run.device import device_name, preflight

    preflight(cfg)  # a configuration error comes back before the training libraries load
    from rnnstudy.study.stages import study_of

    group = study_of(exp, cfg) if exp else None  # a family's hand run: its study's group
    from rnnstudy.names import COMPLETE, DIVERGED, NORM_LOSS
    from rnnstudy.run.train import train

    print(f"rnnstudy train: results under {cfg.out / cfg.experiment}; device {device_name(cfg.train.accelerator)}", flush=True)
    result = train(cfg, group=group)
    final = result.final.get(NORM_LOSS, float("nan"))
    print(
        f"{result.status}: {result.steps} steps in {result.wall_s:.1f}s, final normalised loss {final:.4f}, "
        f"solved {'at step ' + str(result.steps_to_solve) if result.solved else 'no'}\nresults: {result.path}"
    )
    return 0 if result.status in (COMPLETE, DIVERGED) else 1  # a diverged run is a result, as its W&B run says


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the experiment's Optuna studies with worker processes."""
    from rnnstudy.report.summaries import summarise_to_wandb
    from rnnstudy.study.storage import storage_url
    from rnnstudy.study.sweep import run_sweep

    url = storage_url(args.storage, args.storage_file)
    cluster = ClusterOptions(args.gpus_per_task, args.cpus_per_task, args.time_min, args.partition, args.parallelism)
    return run_sweep(
        args.experiment,
        workers=args.workers,
        gpus=args.gpus,
        storage=url,
        overrides=args.overrides,
        launcher=args.launcher,
        cluster=cluster,
        on_done=summarise_to_wandb,
    )


def cmd_status(args: argparse.Namespace) -> int:
    """Print the experiment's studies, trial counts and best parameters."""
    from rnnstudy.study.storage import storage_url
    from rnnstudy.study.sweep import print_status

    return print_status(args.experiment, storage=storage_url(args.storage, args.storage_file), overrides=args.overrides)


def cmd_report(args: argparse.Namespace) -> int:
    """Build the figures and the written report from a results folder."""
    from rnnstudy.report.build import build_report
    from rnnstudy.study.storage import storage_url

    return build_report(args.results, out=args.out, storage=storage_url(args.storage, args.storage_file))


def cmd_config(args: argparse.Namespace) -> int:
    """Print the resolved configuration with each key's default, type, allowed values and meaning."""
    from rnnstudy.run.describe import describe
    from rnnstudy.study.experiment import load_experiment, run_config

    experiment, overrides = _experiment_and_overrides(args)
    exp = load_experiment(experiment, overrides) if experiment else None  # its keys, as `sweep EXP ...` reads them
    cfg = exp.base() if exp else run_config(None, overrides)
    print(
        f"# the resolved run configuration{' of ' + experiment if experiment else ''}: value  # type; default; allowed; meaning"
    )
    print("\n".join(describe(cfg)))
    if exp:
        for name, section in (("study", exp.study), ("T_search", exp.T_search), ("calibrate", exp.calibrate)):
            if section is not None:
                what = " ".join((type(section).__doc__ or "").split()).split(". ")[0].rstrip(".")
                print(f"{name}:  # {what} ({experiment})")
                print("\n".join(describe(section, indent=1)))
        print(f"# {len(exp.points())} studies: grid {dict(exp.grid)}, families {list(exp.families) or '-'}, seeds {exp.seeds}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Print the init-time diagnostics of one configuration (and draw them with --figure)."""
    from rnnstudy.study.experiment import load_run_config

    experiment, overrides = _experiment_and_overrides(args)
    cfg = load_run_config(experiment, overrides)
    if args.figure:
        _writable_file(args.figure, "--figure")  # before torch loads and anything is computed
    from rnnstudy.model.diagnostics import diagnose, draw, predicted_loss
    from rnnstudy.model.gradflow import decay_rate
    from rnnstudy.model.sensitivity import sensitivity

    keep: dict = {}
    d = diagnose(cfg, k=args.k, keep=keep)
    keep["sensitivity"] = sens = sensitivity(keep["net"], keep["batch"], keep["task"])
    rows = {
        "answer-loss decay rate (log10 per step)": f"{d.decay_rate:+.4f}",
        f"gradient horizon (steps, eps {cfg.probe.eps:g})": f"{d.horizon:.0f}",
        "reach k* = log10(1/eps) / -rate (steps)": f"{d.reach:.1f}",
        f"top Lyapunov exponents (per step, k={len(d.lyapunov)})": " ".join(f"{v:+.3f}" for v in d.lyapunov),
        "Lyapunov estimate converged": str(d.lyapunov_converged),
        "gate timescale 1/(1-keep), median / p90 (steps)": f"{d.timescale_median:.1f} / {d.timescale_p90:.1f}",
        "parameter sensitivity decay (log10 per step back)": f"{decay_rate(sens.lags(), sens.norms[1]):+.4f}",
        "predicted memory length (steps)": f"{d.predicted_memory:.1f}",
        f"predicted normalised loss at T={d.T}": f"{predicted_loss(d.reach, d.task, d.T):.3f}",
    }
    print(f"{cfg.model.cell} {cfg.model.hidden_size}, {cfg.task.name} T={cfg.task.T}, init {cfg.init.recurrent}/{cfg.init.bias}")
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"  {key:<{width}}  {value}")
    if args.figure:
        print(f"figure: {draw(d, keep, args.figure)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Score the init-time features and the pre-screen per run against what training measured in results folders."""
    from pathlib import Path

    import pandas as pd

    from rnnstudy.report.prediction import INIT_FEATURES, build, score
    from rnnstudy.run.store import load

    def read_table(path: str) -> pd.DataFrame:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])

    if len(args.results) == 1 and args.results[0].endswith(".csv"):  # a committed per-run table, re-scored
        summary = score(read_table(args.results[0]), Path(args.out))
    else:
        res = load(*args.results)
        for folder, why in res.skipped:
            print(f"rnnstudy predict: warning: skipping damaged run {folder}: {why}", file=sys.stderr)
        if res.runs.empty:
            damaged = f" ({len(res.skipped)} damaged, named above)" if res.skipped else ""
            raise ConfigError(f"{' '.join(args.results)}: no readable runs under them{damaged}")
        known = None
        if args.features_from:
            if not Path(args.features_from).is_file():
                raise ConfigError(f"--features-from {args.features_from!r}: not found; allowed: a run_features.csv an "
                                  "earlier predict wrote")  # fmt: skip
            known = read_table(args.features_from)
            if missing := [c for c in ("run_id", *INIT_FEATURES) if c not in known.columns]:
                raise ConfigError(f"--features-from {args.features_from!r}: no column {', '.join(missing)}; allowed: a "
                                  "run_features.csv an earlier predict wrote")  # fmt: skip
        summary = build(res, Path(args.out), known)
    print(summary.to_string(index=False))
    print(f"written: {args.out}")
    return 0


def cmd_prescreen(args: argparse.Namespace) -> int:
    """Compare a study swept with the pre-screen off and on (compute saved, studies and verdicts lost)."""
    from pathlib import Path

    from rnnstudy.report.prescreen import compare

    for folder in (args.off, args.on):
        if not Path(folder).is_dir():
            raise ConfigError(f"{folder!r}: not a results folder")
    compare(Path(args.off), Path(args.on), Path(args.out))
    print(f"written: {Path(args.out) / 'report.md'}")
    return 0


def _writable_file(path: str, option: str) -> None:
    """Raise ConfigError unless a file can be written at ``path`` (its folder is created)."""
    import tempfile
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{option} = {path!r}: is a folder; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A real file created and removed: permissions alone do not say (root, /proc, a read-only mount).
        tempfile.NamedTemporaryFile(dir=target.parent, prefix=".write-check-").close()
    except OSError as err:
        raise ConfigError(f"{option} = {path!r}: cannot write there ({err.strerror or type(err).__name__})") from None


def _experiment_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    experiment, overrides = args.experiment, list(args.overrides)
    if experiment and "=" in experiment and not os.path.exists(experiment):
        experiment, overrides = None, [experiment, *overrides]
    return experiment, overrides


def cmd_sync(args: argparse.Namespace) -> int:
    """Upload the offline W&B runs of a results folder."""
    from pathlib import Path

    from rnnstudy.run.sync import sync

    return sync(Path(args.results), relink_only=args.relink_only)


def _storage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        help="Optuna storage URL without a password (default: $RNNSTUDY_STORAGE, else a SQLite file under the results root)",
    )
    p.add_argument(
        "--storage-file", help="file holding the storage URL (use this, or $RNNSTUDY_STORAGE, for a URL with a password)"
    )


KEYS_HINT = "Every key, its default, type, allowed values and meaning: rnnstudy config [EXPERIMENT.yaml] [key=value ...]"


def parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    from rnnstudy import __version__

    p = argparse.ArgumentParser(prog="rnnstudy", description=__doc__, epilog=KEYS_HINT)
    p.add_argument("--version", action="version", version=f"rnnstudy {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("config", help="print the resolved configuration with every key's default, allowed values, meaning")
    c.add_argument("experiment", nargs="?", help="experiment YAML (its run defaults are used)")
    c.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.cell=gru task.T=200")
    c.set_defaults(fn=cmd_config)

    t = sub.add_parser("train", help="train one run: rnnstudy train [EXPERIMENT.yaml] [key=value ...]", epilog=KEYS_HINT)
    t.add_argument("experiment", nargs="?", help="experiment YAML (its run defaults are used)")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.cell=gru task.T=200")
    t.set_defaults(fn=cmd_train)

    for name, fn, text in (
        ("sweep", cmd_sweep, "run the experiment's initialisation studies"),
        ("status", cmd_status, "show the experiment's studies and best parameters"),
    ):
        s = sub.add_parser(name, help=text, epilog=KEYS_HINT)
        s.add_argument("experiment", help="experiment YAML")
        s.add_argument("overrides", nargs="*", help="dotted overrides applied to every trial")
        _storage_options(s)
        if name == "sweep":
            s.add_argument("--workers", type=int, default=1, help="worker processes (per GPU when --gpus is given)")
            s.add_argument("--gpus", default="", help="comma-separated GPU indices, e.g. 0,1 ('' = CPU or default device)")
            s.add_argument(
                "--launcher",
                choices=LAUNCHERS,
                default="local",
                help="local worker processes (default), a SLURM job array through submitit, or submitit's local executor",
            )
            ask = ClusterOptions()  # the defaults live in launch.ClusterOptions
            s.add_argument("--gpus-per-task", type=int, default=ask.gpus_per_task, help="SLURM: GPUs per array task")
            s.add_argument("--cpus-per-task", type=int, default=ask.cpus_per_task, help="scheduler: CPUs per array task")
            s.add_argument("--time-min", type=int, default=ask.time_min, help="scheduler: time limit of each task, minutes")
            s.add_argument("--partition", help="SLURM partition")
            s.add_argument("--parallelism", type=int, help="SLURM: array tasks running at once (default: --workers)")
        s.set_defaults(fn=fn)

    r = sub.add_parser("report", help="figures and report from a results folder")
    r.add_argument("results", nargs="+", help="results folder(s), e.g. runs/demo; several are read as one store")
    r.add_argument("--out", help="output folder (default: reports/<folder name>)")
    _storage_options(r)
    r.set_defaults(fn=cmd_report)

    d = sub.add_parser(
        "diagnose", help="init-time diagnostics and predicted memory length: rnnstudy diagnose [EXP.yaml] [key=value ...]"
    )
    d.add_argument("experiment", nargs="?", help="experiment YAML (its run defaults are used)")
    d.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.cell=lstm init.bias=chrono task.T=200")
    d.add_argument("--k", type=int, default=8, help="how many Lyapunov exponents (default 8)")
    d.add_argument("--figure", help="also draw the diagnostics to this PNG")
    d.set_defaults(fn=cmd_diagnose)

    q = sub.add_parser("predict", help="init-time features and the pre-screen scored per run against training")
    q.add_argument("results", nargs="+", help="results folders of memory-length studies, e.g. runs/phase_cpu; or one "
                   "run_features.csv that an earlier predict wrote, re-scored without its runs")
    q.add_argument("--out", required=True, help="folder for the tables and the figure")
    q.add_argument("--features-from", metavar="CSV", help="a run_features.csv an earlier predict wrote: its runs' "
                   "init-time features are reused by run id, only new runs' are computed")  # fmt: skip
    q.set_defaults(fn=cmd_predict)

    s = sub.add_parser("prescreen", help="the same study swept with the pre-screen off and on, compared")
    s.add_argument("off", help="results folder of the sweep without the pre-screen")
    s.add_argument("on", help="results folder of the sweep with study.prescreen set")
    s.add_argument("--out", required=True, help="folder for report.md and best_per_study.csv")
    s.set_defaults(fn=cmd_prescreen)

    y = sub.add_parser("sync", help="upload the offline W&B runs of a results folder (needs a key and a network)")
    y.add_argument("results", nargs="?", default="runs", help="results folder (default: runs)")
    y.add_argument("--relink-only", action="store_true",
                   help="only make the folder's staging links again (no key needed), e.g. before a plain `wandb sync`")
    y.set_defaults(fn=cmd_sync)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rnnstudy`` console script."""
    p = parser()
    args, extra = p.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or not hasattr(args, "overrides")]
    if unknown:
        p.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    fn: Callable[[argparse.Namespace], int] = args.fn
    from rnnstudy.quiet import quiet_libraries

    quiet_libraries()
    stop_on_signals()
    try:
        return fn(args)
    except KeyboardInterrupt:  # SIGINT or SIGTERM: whatever was running recorded it; one line, the signal's status
        print(f"rnnstudy {args.command}: stopped ({stop_reason()})", file=sys.stderr)
        return stop_status()
    except ConfigError as err:
        print(f"rnnstudy {args.command}: configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as err:  # a full disk, a folder that vanished: one line, not a traceback
        where = f": {err.filename}" if err.filename else ""
        print(f"rnnstudy {args.command}: {err.strerror or type(err).__name__}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
