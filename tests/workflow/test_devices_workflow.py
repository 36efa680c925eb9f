"""The whole workflow on the GPU (cupy) against the same run on numpy: equal counts (skipped without a GPU).

GPU placement itself (jobs spread over devices, a killed job's slot freed): tests/unit/pipeline/test_devices.py.
"""

from __future__ import annotations

import csv

import pytest

from openhcs_rules_testkit.workflow import snakemake, write_config


def _gpu_count() -> int:
    from openhcs_rules.core.arrays import gpu_available

    if not gpu_available():
        pytest.skip("needs cupy and a CUDA device")
    from openhcs_rules.pipeline.devices import visible_device_count

    return visible_device_count()


@pytest.mark.gpu
@pytest.mark.workflow
def test_workflow_on_the_gpu_matches_the_numpy_run(tmp_path):
    _gpu_count()
    spec = {"wells": ["B02", "B03", "C02", "C03"], "sites": 2, "z_planes": 3, "size": 512, "seed": 5}
    counts = {}
    for memory_type in ("numpy", "cupy"):
        folder = tmp_path / memory_type
        folder.mkdir()
        config = write_config(
            folder, {"plates": {"demo": {"source": "synthetic", "synthetic": spec}}, "gpu": memory_type}
        )
        done = snakemake(folder, config, "--cores", "4", env={"OPENHCS_GPU_LOCK_DIR": str(tmp_path / "locks")})
        assert done.returncode == 0, done.stderr[-3000:]
        with (folder / "results" / "demo" / "wells.csv").open() as handle:
            counts[memory_type] = {row["Metadata_Well"]: int(row["Nuclei_Count"]) for row in csv.DictReader(handle)}
        logs = "".join(path.read_text() for path in (folder / "logs").rglob("*.log"))
        assert ("claimed GPU 0" in logs) == (memory_type == "cupy")
    for well, expected in counts["numpy"].items():
        # labels may differ where two equal seeds tie (test_functions_gpu.py): counts within 1
        assert abs(counts["cupy"][well] - expected) <= 1, (well, counts)
