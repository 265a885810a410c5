"""The rule's `threads:` reaches the job: SimpleITK's thread count and the fast engine's."""

import SimpleITK as sitk

from support import affine_from, run_snakemake, smooth_volume, write_nifti
from nii_resample.volume import resample_volume


def test_itk_engine_uses_the_threads_it_is_given(tmp_path):
    source = write_nifti(tmp_path / "in.nii.gz", smooth_volume((16, 16, 8)), affine_from((1, 1, 2)))
    for threads in (1, 2):
        resample_volume(source, tmp_path / "out.nii.gz", (8, 8, 8), engine="itk", threads=threads)
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads


def test_threads_per_job_reaches_the_job(tmp_path, make_dataset):
    folder, _ = make_dataset(names=("ct",))
    config = {"nii_folder": str(folder), "output_path": str(tmp_path / "out"),
              "desired_volume": [8, 8, 8], "threads_per_job": 2}
    run_snakemake(tmp_path / "work", config, cores=2)
    log = (tmp_path / "out" / "logs" / "resample_volume" / "ct.log").read_text()
    # The line that describes the job (after the one naming its resident worker).
    (job,) = [line for line in log.splitlines() if line.startswith("resampling ")]
    assert "threads=2" in job
