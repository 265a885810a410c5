"""Join the one-row records of the resample jobs into the run's manifest (a TSV, one row per volume)."""

from pathlib import Path

import pandas as pd

from nii_resample.nifti import atomic_write_bytes
from nii_resample.records import RECORD_COLUMNS


def build_manifest(record_paths, manifest_path) -> pd.DataFrame:
    """Concatenate the records, sorted by input path, and write them atomically."""
    missing = [path for path in record_paths if not Path(path).is_file()]
    if missing:
        # Each job writes its record just before its volume: only a deleted record is missing.
        raise SystemExit(
            f"ERROR {missing[0]}: the record of a resampled volume is missing"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; redo those "
            "volumes, e.g. delete their resampled files, or run with --forcerun resample_volume"
        )
    records = [pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False) for path in record_paths]
    manifest = pd.concat(records, ignore_index=True) if records else pd.DataFrame()
    manifest = manifest.reindex(columns=list(RECORD_COLUMNS))
    manifest = manifest.sort_values("input_path", kind="stable", ignore_index=True)
    atomic_write_bytes(manifest_path, manifest.to_csv(sep="\t", index=False).encode("utf-8"))
    return manifest


if "snakemake" in globals():  # run by the workflow's `script:` directive
    build_manifest(snakemake.params.records, snakemake.output.manifest)
