"""``spectro-train``: the lab command line (fit a model bundle from a TOML config, sign bundles, make keys).

Subcommands::

    spectro-train fit CONFIG --out DIR      train; writes DIR/<model_id>.spectrolite, DIR/metrics.json, DIR/report/
    spectro-train search CONFIG --out DIR   run CNN recipe search trials only (one worker of a shared Optuna study)
    spectro-train sign BUNDLE --key KEY     add an Ed25519 signature (PEM private key) to a bundle
    spectro-train keygen DIR [--name N]     create DIR/N.key.pem (private) and DIR/N.pub.pem (public)
    spectro-train transfer BUNDLE --pairs DATA.npz --out NEW.spectrolite
                                            DS/PDS calibration transfer to a second instrument (new bundle)
    spectro-train update BUNDLE --archive F.npz --references lims.csv --config CONFIG --out DIR
                                            lab values joined to archived line spectra: the deployed model's
                                            figures, then a retrained bundle compared with it

Progress and diagnostics go to stderr through logging (configured here only); results go to stdout. Expected
failures (bad data, bad config, a failed check) end as one line ``spectro-train: error: ...`` and exit code 1;
a bad command line exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

log = logging.getLogger("trainer.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``spectro-train``."""
    p = argparse.ArgumentParser(prog="spectro-train", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser("fit", help="train a bundle from a TOML config")
    f.add_argument("config", type=Path, help="training config (TOML), e.g. examples/tablets_assay.toml")
    f.add_argument("--out", type=Path, default=None, help="output folder (required unless --check)")
    f.add_argument("--check", action="store_true",
                   help="check the config, the data and the split as a fit does before training, print what "
                        "would train, and stop (seconds; writes nothing)")
    f.add_argument("--seed", type=int, default=None, help="override the config's seed")
    f.add_argument("--model", choices=("auto", "cnn", "pls"), default=None,
                   help="which model serves each target: auto (the champion rule per target, the default), "
                        "or force cnn / pls for every target")
    f.add_argument("--threads", type=int, default=None,
                   help="CPU threads for TensorFlow/BLAS (default: all); set before TensorFlow loads")
    f.add_argument("--budget-min", type=float, default=None, metavar="M",
                   help="minutes for the CNN recipe search ([search] budget_min); 0 trains the configured recipe, "
                        "M > 0 searches even without a [search] table")

    r = sub.add_parser("search", help="run CNN recipe search trials into a (shared) Optuna study, no bundle")
    r.add_argument("config", type=Path, help="training config (TOML)")
    r.add_argument("--out", type=Path, required=True, help="output folder (holds the default SQLite study file)")
    r.add_argument("--budget-min", type=float, default=None, metavar="M", help="minutes this worker searches")
    r.add_argument("--trials", type=int, default=None, help="most trials this worker runs")
    r.add_argument("--storage", default=None,
                   help="Optuna storage URL (postgresql://, mysql+pymysql://, sqlite:///) or SQLite file name")
    r.add_argument("--study-name", default=None, help="study name (default: derived from the config and data)")
    r.add_argument("--worker", type=int, default=0, help="index of this worker (seeds its sampler apart)")
    r.add_argument("--seed", type=int, default=None, help="override the config's seed")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for TensorFlow/BLAS (default: all)")

    s = sub.add_parser("sign", help="sign a bundle with an Ed25519 private key")
    s.add_argument("bundle", type=Path)
    s.add_argument("--key", type=Path, required=True, help="PEM private key (see keygen)")

    k = sub.add_parser("keygen", help="create an Ed25519 signing key pair")
    k.add_argument("dir", type=Path)
    k.add_argument("--name", default="spectrolite", help="file name stem (default: spectrolite)")
    k.add_argument("--force", action="store_true", help="overwrite existing key files")

    from trainer.transfer import add_transfer_arguments  # (numpy only at import)

    add_transfer_arguments(
        sub.add_parser("transfer", help="write a bundle for a second instrument (DS/PDS from paired spectra)")
    )
    from trainer.update import add_update_arguments  # (no TensorFlow at import)

    add_update_arguments(sub.add_parser("update", help="join lab values to archived line spectra, evaluate the "
                                                       "deployed bundle on them and retrain on old + new"))
    return p


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _limit_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(n)


def _cmd_fit(args: argparse.Namespace) -> int:
    from trainer.config import load_config
    from trainer.pipeline import fit_full

    cfg = _apply_fit_overrides(load_config(args.config), args.seed, args.model)
    cfg = _apply_search_overrides(cfg, args.budget_min)
    if args.check:
        from trainer.pipeline.fit import check_fit

        print(f"config: {args.config}" + ("" if args.out is None else f" (--out {args.out} not used: --check writes "
                                                                       "nothing)"))
        print("\n".join(check_fit(cfg)))
        return 0
    res = fit_full(cfg, args.out)
    m = res.metrics
    key = "accuracy" if m["task"] == "classification" else "rmsep"
    print(f"bundle: {res.bundle_path} ({m['bundle_bytes']} bytes, model {m['model_bytes']} bytes)")
    print(f"metrics: {res.metrics_path}")
    if res.report_path is not None:
        print(f"report: {res.report_path}")
    for c in m.get("comparison", []):
        ratio = c.get("ratio_int8_to_pls")
        print(f"{c['split']:>12} {c['target']:<14} {key} pls {c[f'pls_{key}']:.4g}  cnn_float "
              f"{c[f'cnn_float_{key}']:.4g}  cnn_int8 {c[f'cnn_int8_{key}']:.4g}"
              + (f"  int8/pls {ratio:.3f}" if ratio is not None else "")
              + (f"  deployed {c[f'deployed_{key}']:.4g}" if c.get(f"deployed_{key}") is not None else ""))
    sel = m.get("selection") or {}
    print(f"deployed: {m.get('deployed_model')} ({sel.get('reason', '')})")
    if m.get("deployed_model") == "per_target":
        print("served by: " + ", ".join(f"{t} {v}" for t, v in (m.get("deployed_per_target") or {}).items()))
    srch = m.get("search") or {}
    if srch.get("ran"):
        print(_search_line(srch))
    print(f"train_seconds: {m['train_seconds']}")
    if m.get("warnings"):
        print(f"warnings: {len(m['warnings'])} (metrics.json warnings"
              + ("; the report lists them first)" if res.report_path is not None else ")"))
    return 0


def _apply_fit_overrides(cfg: Any, seed: int | None, model: str | None) -> Any:
    """The config with ``--seed`` and ``--model`` applied (each when given)."""
    from dataclasses import replace

    if seed is not None:
        if seed < 0:
            raise ValueError(f"--seed: expected an integer >= 0, got {seed}")
        cfg = replace(cfg, seed=seed)
    if model is not None:
        cfg = replace(cfg, selection=replace(cfg.selection, model=model))
    return cfg


def _apply_search_overrides(cfg: Any, budget_min: float | None, trials: int | None = None,
                            storage: str | None = None, study_name: str | None = None) -> Any:
    """The config with ``--budget-min`` and the ``search`` command's options applied; ``--budget-min M > 0``
    turns the search on (with the defaults of an empty ``[search]`` table when the config has none)."""
    from dataclasses import replace

    from trainer.config import SearchConfig

    sc = cfg.search
    if budget_min is not None:
        if not budget_min >= 0:
            raise ValueError(f"--budget-min: expected minutes >= 0, got {budget_min}")
        if budget_min > 0 and not sc.enabled and "search" not in cfg.raw:
            sc = SearchConfig.from_dict({})
        sc = replace(sc, budget_min=float(budget_min))
    if trials is not None:
        if trials < 1:
            raise ValueError(f"--trials: expected an integer >= 1, got {trials}")
        sc = replace(sc, trials=trials)
    if storage is not None:
        sc = replace(sc, storage=storage)
    if study_name is not None:
        sc = replace(sc, study_name=study_name)
    return replace(cfg, search=sc)


def _search_line(srch: dict[str, Any]) -> str:
    spread = srch.get("seed_spread") or {}
    best = srch.get("best_trial")
    parts = [f"search: {srch.get('trials_run')} trials ({srch.get('trials_pruned')} pruned) in "
             f"{srch.get('budget_used_s', 0):.0f} s, "
             + (f"best trial {best}" + (" (the configured recipe)" if srch.get("best_is_configured") else "")
                if best is not None else "no trial finished its cross-validation" if srch.get("budget_note")
                else "no trial finished its cross-validation: the configured recipe is trained as is")]
    if srch.get("best_score") is not None:
        conf = srch.get("configured_score")
        parts.append(f"score {srch['best_score']:.4g}" + (f" vs configured {conf:.4g}" if conf is not None else ""))
    if srch.get("budget_note"):
        parts.append(str(srch["budget_note"]))
    if spread.get("mean"):
        parts.append("seed spread " + ", ".join(f"{t} {spread['mean'][t]:.4g} +/- {spread['std'][t]:.2g}"
                                                for t in spread["mean"]))
    return "; ".join(parts)


def _cmd_search(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from trainer.config import load_config
    from trainer.pipeline.recipe import build_model_configs
    from trainer.search import prepare_inputs, run_search

    cfg = load_config(args.config)
    if args.seed is not None:
        if args.seed < 0:
            raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
        cfg = replace(cfg, seed=args.seed)
    if args.worker < 0:
        raise ValueError(f"--worker: expected an integer >= 0, got {args.worker}")
    cfg = _apply_search_overrides(cfg, args.budget_min, args.trials, args.storage, args.study_name)
    if "search" not in cfg.raw and not cfg.search.enabled:
        cfg = replace(cfg, search=replace(cfg.search, enabled=True))
    if not cfg.search.active:
        raise ValueError("search: nothing to do (enabled = false, budget_min = 0 or trials = 0)")
    build_model_configs(cfg)  # [model], [augment], [pruning] checked before the data load and the first trial
    args.out.mkdir(parents=True, exist_ok=True)
    res = run_search(cfg, prepare_inputs(cfg), args.out, worker=args.worker, spread=False)
    print(f"study: {res.study_name} ({res.storage_kind})")
    print(f"trials: {res.trials_run} run by this worker ({res.trials_pruned} pruned, {res.trials_failed} failed), "
          f"{res.trials_in_study} in the study")
    if res.best_value is not None:
        print(f"best: trial {res.best_trial}, score {res.best_value:.4g}, {res.error_name} "
              + ", ".join(f"{k} {v:.4g}" for k, v in (res.best_cv_rmse or {}).items()))
    if res.trials_run and res.trials_failed == res.trials_run:
        first = next((e["error"] for e in res.trial_log if e.get("error")), "see the log")
        print(f"spectro-train: error: every trial this worker ran failed ({res.trials_failed}); the first: {first}",
              file=sys.stderr)
        return 1
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from trainer.bundle import sign_bundle

    if not args.bundle.is_file():
        raise FileNotFoundError(f"no such bundle: {args.bundle}")
    if not args.key.is_file():
        raise FileNotFoundError(f"no such key file: {args.key}")
    print(f"signed: {sign_bundle(args.bundle, args.key)}")
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    from trainer.bundle import generate_keypair

    private, public = generate_keypair(args.dir, name=args.name, overwrite=args.force)
    print(f"private key: {private}")
    print(f"public key: {public}")
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    from trainer.transfer import run_transfer_command

    return run_transfer_command(args)


def _cmd_update(args: argparse.Namespace) -> int:
    from trainer.update import run_update_command

    return run_update_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spectro-train``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "fit" and args.out is None and not args.check:
        parser.error("fit: expected --out DIR (or --check to stop after the checks), got neither")
    _configure_logging(args.verbose, args.quiet)
    if not args.verbose:  # TensorFlow's C++ log ("NodeDef mentions attribute ...") reads like errors; its failures
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # reach us as exceptions, and -v shows it all
    if getattr(args, "threads", None):
        _limit_threads(args.threads)
    handlers = {"fit": _cmd_fit, "search": _cmd_search, "sign": _cmd_sign, "keygen": _cmd_keygen,
                "transfer": _cmd_transfer, "update": _cmd_update}
    from edge.errors import EdgeError
    from trainer.errors import TrainerError

    try:
        return handlers[args.command](args)
    except (TrainerError, EdgeError, ValueError, FileNotFoundError, FileExistsError, PermissionError) as exc:
        if args.verbose:
            log.exception("failed")
        print(f"spectro-train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spectro-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
