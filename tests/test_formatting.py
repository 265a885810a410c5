"""The shared small facts: how numbers are written, the one-line reason of a failure, a
failed manifest row, and the one reader of the TSV files."""

import numpy as np

from nii_resample.errors import VolumeError, failure_reason, one_line
from nii_resample.formatting import (
    decimals_text,
    exact_text,
    number_text,
    numbers_text,
    size_text,
)
from nii_resample.records import RECORD_COLUMNS, failed_row, read_rows, read_table, tsv_bytes


def test_sizes_and_numbers_are_written_one_way():
    assert size_text((20, np.int64(18), 16.0)) == "20x18x16"
    assert size_text((20, 18, 16), " \u00d7 ") == "20 \u00d7 18 \u00d7 16"
    # Exactly: the float32 spacing a header holds reads back as the same float.
    assert exact_text([1.0, np.float32(1.1), 2]) == "1.0,1.100000023841858,2.0"
    assert number_text(3.123456789) == "3.12346" and number_text("1e-7") == "1e-07"
    assert numbers_text([1.0, 1.1, 2.0]) == "1,1.1,2"
    assert numbers_text([1024, 0.25], 3, " x ") == "1.02e+03 x 0.25"
    assert decimals_text("0.70000001,2.5,3", 4) == "0.7, 2.5, 3" and decimals_text("", 4) == ""


def test_a_failure_is_one_line():
    assert one_line("a\n  b\tc ") == "a b c"
    assert failure_reason("ct.nii.gz", VolumeError("ct.nii.gz: bad\nheader")) == \
        "ct.nii.gz: bad header"
    assert failure_reason("ct.nii.gz", KeyError("x")) == "ct.nii.gz: KeyError: 'x'"


def test_failed_rows_and_the_tsv_reader(tmp_path):
    row = failed_row("in.nii.gz", "out.nii.gz", "in.nii.gz: broken")
    assert row == {"input_path": "in.nii.gz", "output_path": "out.nii.gz", "status": "failed",
                   "reason": "in.nii.gz: broken"}
    assert failed_row("a", "b", "r", grid="")["grid"] == ""
    path = tmp_path / "manifest.tsv"
    path.write_bytes(tsv_bytes(RECORD_COLUMNS, [{**row, "input_path": 'a "b"\tc'}]))
    columns, rows = read_table(path)
    assert columns == list(RECORD_COLUMNS) and rows == read_rows(path)
    assert rows[0]["input_path"] == 'a "b"\tc' and rows[0]["seconds"] == ""
    path.write_bytes(tsv_bytes(RECORD_COLUMNS, []))
    assert read_table(path) == (list(RECORD_COLUMNS), [])
