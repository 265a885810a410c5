"""QC pictures of a resampling run: the workflow's QC jobs, and a command line.

The work is done by pure functions of nii_resample.qc_figures (`qc_figure`, `overview_figure`,
`manifest_table`); this file only connects them to Snakemake (the shim at the bottom) and to
the shell (`main`).

    python scripts/qc.py volume in.nii.gz in_resampled.nii.gz qc.png [--label-map]
    python scripts/qc.py overview manifest.tsv overview.png
    python scripts/qc.py table manifest.tsv manifest.html
"""

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

# This workflow's own package (src/nii_resample) first: never another version installed in
# the environment. (`script:` runs a copy of this file: snakemake.scriptdir is scripts/.)
HERE = snakemake.scriptdir if "snakemake" in globals() else os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from nii_resample.qc_figures import CONVENTIONS, manifest_table, overview_figure, qc_figure
from nii_resample.records import read_rows

__all__ = ["qc_figure", "overview_figure", "manifest_table", "main", "method_text"]


def method_text(record: dict) -> str:
    """How a volume was resampled, from its record: e.g. 'bspline + anti-aliasing, fast engine'."""
    if not record.get("interpolation"):
        return ""
    antialias = str(record.get("antialias", "")).lower() == "true"
    text = record["interpolation"] + (" + anti-aliasing" if antialias else "")
    return text + (f", {record['engine']} engine" if record.get("engine") else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    volume = commands.add_parser("volume", help="one volume before/after: a PNG")
    volume.add_argument("in_path", help="original .nii.gz volume")
    volume.add_argument("out_path", help="its resampled .nii.gz volume")
    volume.add_argument("png_path", help="PNG to write")
    volume.add_argument("--label-map", action="store_true", help="categorical colours")
    volume.add_argument("--convention", choices=CONVENTIONS, default="radiological")
    overview = commands.add_parser("overview", help="the dataset from manifest.tsv: a PNG")
    overview.add_argument("manifest_path")
    overview.add_argument("png_path")
    table = commands.add_parser("table", help="manifest.tsv as an HTML table")
    table.add_argument("manifest_path")
    table.add_argument("html_path")
    args = parser.parse_args(argv)
    if args.command == "volume":
        written = qc_figure(
            args.in_path,
            args.out_path,
            args.png_path,
            label_map=args.label_map,
            convention=args.convention,
        )
    elif args.command == "overview":
        written = overview_figure(args.manifest_path, args.png_path)
    else:
        written = manifest_table(args.manifest_path, args.html_path)
    print(written)
    return 0


def run_job(snakemake) -> None:
    """One QC job of the workflow; what it did (or the traceback) goes to its log."""
    started = time.perf_counter()
    Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
    with open(snakemake.log[0], "w", encoding="utf-8") as log:
        try:
            if snakemake.rule.startswith("qc_figure"):
                record = read_rows(snakemake.params.record)[0]
                written = qc_figure(
                    snakemake.input.volume,
                    snakemake.input.resampled,
                    snakemake.output.png,
                    label_map=record.get("kind") == "label_map",
                    method=method_text(record),
                )
            elif snakemake.rule.startswith("qc_overview"):
                written = overview_figure(snakemake.input.manifest, snakemake.output.png)
            else:
                written = manifest_table(snakemake.input.manifest, snakemake.output.html)
        except Exception:
            traceback.print_exc(file=log)
            raise
        print(f"wrote {written} in {time.perf_counter() - started:.2f} s", file=log)


if "snakemake" in globals():  # run by the workflow's `script:` directive
    run_job(snakemake)
elif __name__ == "__main__":
    sys.exit(main())
