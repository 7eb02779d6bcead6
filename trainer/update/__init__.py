"""``spectro-train update``: a calibration that learns from the line.

The device archives the spectra it judged (``[archive]``, docs/daemon.md) and the lab measures a few of the samples
the line saw. ``spectro-train update BUNDLE --archive F.npz --references lims.csv --config CONFIG --out DIR``:

1. joins the lab's reference values to the exported spectra (:mod:`~trainer.update.join`: on the sample id of
   ``tag_sample``, or on the nearest spectrum to a sampling time within ``--window-s``), reporting what did not
   join;
2. runs the deployed bundle on the joined spectra exactly as the edge does (:mod:`~trainer.update.deployed`: the
   archived raw values with their references through :class:`edge.inference.InferenceEngine`, checked against the
   predictions the device published) and reports bias, RMSEP, SEP, slope, R2 per target, and the bias over time
   (rolling, trend per day), plotted;
3. retrains on old + new data (:mod:`~trainer.update.retrain`): the config's data split by its own rules, the line
   spectra appended as one group per lab sample, a share of the lab samples held out (``--holdout-fraction``),
   then the whole ``spectro-train fit`` (same champion rule, OOD, intervals) writes a new bundle with the next
   model version;
4. compares the old and new bundle on the held-out line samples (both run as the edge runs them) and on the
   original test sets, in ``DIR/update.json`` and ``DIR/update/index.html`` (:mod:`~trainer.update.report`).

The bundle does not carry its training config, so ``--config`` is required to retrain (``--no-retrain`` stops
after step 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_update_arguments", "run_update_command"]


def add_update_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``spectro-train update``."""
    p.add_argument("bundle", type=Path, help="the deployed bundle (.spectrolite) whose spectra were archived")
    p.add_argument("--archive", type=Path, required=True, help="spectro-edge export ARCHIVE --out F.npz")
    p.add_argument("--references", type=Path, required=True,
                   help="lab CSV: a sample id and/or sampling time column, one column per target")
    p.add_argument("--out", type=Path, required=True, help="output folder (new bundle, metrics.json, reports)")
    p.add_argument("--config", type=Path, default=None,
                   help="the TOML that trained the bundle (required to retrain: the bundle does not carry it)")
    p.add_argument("--no-retrain", dest="retrain", action="store_false",
                   help="stop after the join and the deployed model's figures")
    p.add_argument("--id-column", default="sample_id", help="sample id column of the CSV (default sample_id)")
    p.add_argument("--time-column", default="sampled_at",
                   help="sampling time column (ISO 8601, no zone = UTC; default sampled_at)")
    p.add_argument("--window-s", type=float, default=60.0,
                   help="a row with only a time joins the nearest spectrum within this many seconds (default 60)")
    p.add_argument("--rolling", type=int, default=10, help="lab samples in the rolling bias/RMSEP (default 10)")
    p.add_argument("--holdout-fraction", type=float, default=0.3,
                   help="share of the lab samples held out to compare old and new fairly (default 0.3; 0 trains "
                        "on all)")
    p.add_argument("--budget-min", type=float, default=None, metavar="M",
                   help="minutes of CNN recipe search (default: 1 when the config has an active [search], else "
                        "0, the configured recipe)")
    p.add_argument("--model", choices=("auto", "cnn", "pls"), default=None,
                   help="which model the new bundle carries (default: the config's, the champion rule for auto)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--model-version", default=None,
                   help="version of the new bundle (default: the deployed one's last number + 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for TensorFlow/BLAS (default: all)")


def run_update_command(args: argparse.Namespace) -> int:
    """Run ``spectro-train update`` from parsed arguments; prints what it wrote and the headline figures."""
    from trainer.update.run import UpdateOptions, run_update

    res = run_update(UpdateOptions(
        bundle=args.bundle, archive=args.archive, references=args.references, out=args.out, config=args.config,
        id_column=args.id_column, time_column=args.time_column, window_s=args.window_s, rolling=args.rolling,
        holdout_fraction=args.holdout_fraction, budget_min=args.budget_min, model=args.model, seed=args.seed,
        model_version=args.model_version, retrain=args.retrain))
    s = res.summary
    j = s["join"]
    print(f"joined: {j['spectra_joined']} spectra of {j['lab_samples']} lab samples ({j['spectra_joined_on_sample_id']}"
          f" on sample id, {j['spectra_joined_on_time']} on time); lab rows unmatched {j['lims_rows_unmatched']} of "
          f"{j['lims_rows']}; tagged spectra without a lab row {j['tagged_spectra_without_lab_row']}")
    for t, f in s["deployed_on_line"]["figures"].items():
        if f.get("n"):
            print(f"deployed {s['old_bundle']['model_version']} {t}: n {f['n']} bias {f['bias']:.4g} rmsep "
                  f"{f['rmsep']:.4g} slope {f['slope']:.4g} bias trend/day {f['bias_trend_per_day']:.4g}")
    cmp_ = s.get("comparison")
    if cmp_:
        block = cmp_["line"].get("held_out") or cmp_["line"]["all_joined"]
        where = "held-out line samples" if "held_out" in cmp_["line"] else "all line samples (in-sample for new)"
        for t in s["targets"]:
            o, n = block["old"].get(t, {}), block["new"].get(t, {})
            if o.get("n") and n.get("n"):
                print(f"{where} {t}: rmsep old {o['rmsep']:.4g} new {n['rmsep']:.4g}; bias old {o['bias']:.4g} "
                      f"new {n['bias']:.4g}")
    if res.bundle_path is not None:
        print(f"bundle: {res.bundle_path} ({s['new_bundle']['model_version']}, {s['new_bundle']['deployed_model']})")
    print(f"update: {res.json_path}")
    print(f"report: {res.report_path}")
    return 0
