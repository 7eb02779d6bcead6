"""The ``spectro-train transfer`` subcommand: its arguments and its run."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trainer.errors import DataError
from trainer.transfer.bundle import transfer_bundle
from trainer.transfer.model import METHODS
from trainer.transfer.samples import load_transfer_pairs


def add_transfer_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``spectro-train transfer`` (the CLI calls :func:`run_transfer_command` with the result)."""
    parser.add_argument("bundle", type=Path, help="bundle of the master instrument (.spectrolite)")
    parser.add_argument("--pairs", type=Path, required=True,
                        help=".npz with X, wavelengths, instrument and sample_id (rows paired by sample_id)")
    parser.add_argument("--out", type=Path, required=True, help="new bundle for the slave instrument (.spectrolite)")
    parser.add_argument("--method", choices=METHODS, default="pds", help="calibration transfer method (default pds)")
    parser.add_argument("--window", type=int, default=None, help="PDS window in channels (default: cross-validated)")
    parser.add_argument("--master", default="1", help="instrument value of the master (default 1)")
    parser.add_argument("--slave", default="2", help="instrument value of the slave (default 2)")
    parser.add_argument("--split", default=None, help="use only transfer rows of this split (e.g. the training split)")
    parser.add_argument("--n-transfer", type=int, default=None,
                        help="use this many pairs, chosen by Kennard-Stone on the master spectra (default: all)")
    parser.add_argument("--model-version", default=None, help="version of the new bundle (default: derived)")
    parser.add_argument("--public-key", type=Path, default=None, help="verify the input bundle's signature")
    parser.add_argument("--private-key", type=Path, default=None, help="sign the new bundle (PEM private key)")


def run_transfer_command(args: argparse.Namespace) -> int:
    """``spectro-train transfer``: fit DS/PDS from paired spectra and write the slave instrument's bundle.

    Prints the new bundle path, the method, window and number of pairs to stdout; returns 0. Errors are
    :class:`~trainer.errors.TrainerError` / :class:`~edge.errors.EdgeError` for the CLI to print as one line.
    """
    from edge.bundle import load_bundle

    Xm, Xs, _ids, wl = load_transfer_pairs(
        args.pairs, master=args.master, slave=args.slave, split=args.split, n=args.n_transfer
    )
    grid = load_bundle(args.bundle, public_key=args.public_key, self_test=False).wavelengths
    if grid.shape == wl.shape and not np.allclose(grid, wl, atol=float(np.min(np.abs(np.diff(grid)))) / 2):
        raise DataError(
            f"expected paired spectra on the bundle's grid {grid[0]:g}-{grid[-1]:g}, got {wl[0]:g}-{wl[-1]:g}"
        )
    out = transfer_bundle(
        args.bundle, Xs, Xm, args.out, method=args.method, window=args.window, model_version=args.model_version,
        public_key=args.public_key, private_key_path=args.private_key,
    )
    b = load_bundle(out, public_key=None)
    t = b.metrics["transfer"]
    print(f"bundle: {out} (model {b.model_id} {b.model_version})")
    print(f"transfer: {t['method']}, {t['n_transfer']} pairs" + (f", window {t['window']}" if t["window"] else ""))
    return 0
