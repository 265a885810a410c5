"""What the run prints at its end: the debug summary and the list of failed volumes."""

from __future__ import annotations

from pathlib import Path

from .formatting import numbers_text
from .records import read_rows


def print_summary(config: dict, manifest_path, n_volumes: int, grids=None) -> None:
    """Short summary for `debug: true`: how many volumes, target shape, where outputs are
    (`grids`: the plan's, whose spacing rules are resolved; default from the config)."""
    from .settings import resolve_grids

    grids = grids or resolve_grids(config)
    if grids[0]["name"] is None and grids[0].get("desired_volume"):
        target = f"  target shape (X,Y,Z) : {grids[0]['label']}"
    else:
        target = f"  target grid(s)       : {', '.join(grid['label'] for grid in grids)}"
    rows = read_rows(manifest_path) if Path(manifest_path).exists() else []
    lines = [
        "",
        "Resampling summary",
        f"  volumes found        : {n_volumes} in {config['nii_folder']}",
        f"  resampled            : {sum(row['status'] == 'ok' for row in rows)}",
        f"  failed               : {sum(row['status'] == 'failed' for row in rows)}",
        target,
        f"  saving mode          : {config['saving_mode']} -> {config['output_path']}",
        f"  engine               : {config['engine']}",
        f"  manifest             : {manifest_path}",
    ]
    done = [row for row in rows if row["status"] == "ok"]
    if done:
        # A rebuilt record has no time (its job's was lost with it); failed rows have none.
        seconds = sum(float(row["seconds"]) for row in done if row["seconds"])
        lines.append(f"  resampling time      : {seconds:.1f} s in total")
        lines.append("  per volume           : original size -> new spacing (mm)")
        for row in done:
            lines.append(
                f"    {Path(row['input_path']).name}{_on_grid(row, grids)}: {row['original_size']} "
                f"({_rounded(row['original_spacing'])}) -> {_rounded(row['new_spacing'])}"
            )
    print("\n".join(lines), flush=True)


def _on_grid(row: dict, grids) -> str:
    """ " (grid low)" when the run has several grids."""
    return f" (grid {row.get('grid', '')})" if len(grids) > 1 else ""


def _rounded(vector_text: str) -> str:
    """A comma-separated vector with 4 significant digits, for reading."""
    return numbers_text(vector_text.split(","), 4, " x ")


def print_failures(
    failures: list[dict], report_path, n_volumes: int, manifest_path=None, n_grids: int = 1
) -> None:
    """The failed volumes, one line each; where they and the others are listed. With several
    grids a failure is one volume on one grid: counted as such, out of volumes x grids."""
    if not failures:
        return
    results = n_volumes * n_grids
    noun = "volumes" if n_grids == 1 else "results"
    counted = noun if n_grids == 1 else f"{noun} ({n_volumes} volumes x {n_grids} grids)"
    lines = ["", f"{len(failures)} of {results} {counted} failed (listed in {report_path}):"]
    lines += [f"  {failure['reason']}  [log: {failure['log']}]" for failure in failures]
    if manifest_path is not None and Path(manifest_path).exists():
        lines.append(
            f"{manifest_path} lists all {results} {noun}: "
            f"{results - len(failures)} resampled, {len(failures)} failed (status failed); "
            "the next run rebuilds it."
        )
    print("\n".join(lines), flush=True)
