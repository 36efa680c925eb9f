"""A pipeline with a step from an installed plugin (the example plugin, installed by pip once per session by
the ``example_plugin`` fixture) runs through the real workflow: the jobs find it on their PYTHONPATH.

Plugins in process: tests/unit/pipeline/test_plugins.py.
"""

from __future__ import annotations

import csv

import pytest

from openhcs_rules_testkit.workflow import snakemake, write_config

HEADER = "from openhcs_rules.pipeline import Pipeline, Step\n"


def pipeline_text(*steps: str) -> str:
    return HEADER + "pipeline = Pipeline(name='p', steps=[\n" + "".join(f"    {s},\n" for s in steps) + "])\n"


@pytest.mark.workflow
def test_workflow_runs_a_pipeline_with_a_plugin_step(tmp_path, example_plugin):
    pipeline = tmp_path / "tophat_count.py"
    pipeline.write_text(
        pipeline_text(
            "Step(name='background', func='example.top_hat', kwargs={'radius': 6})",
            "Step(name='objects', func='example.otsu_objects', channel='nuclei', kwargs={'min_area': 4})",
            "Step(name='measure', func='measure_objects')",
        )
    )
    synthetic = {"wells": ["B02"], "sites": 1, "channels": 1, "z_planes": 1, "size": 128}
    config = write_config(
        tmp_path, {"plates": {"demo": {"source": "synthetic", "synthetic": synthetic}}, "pipeline": str(pipeline)}
    )
    done = snakemake(tmp_path, config, env={"PYTHONPATH": str(example_plugin), "OPENHCS_DISABLE_GPU": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "results" / "demo" / "wells.csv").open() as handle:
        wells = list(csv.DictReader(handle))
    assert [row["Metadata_Well"] for row in wells] == ["B02"] and int(wells[0]["Nuclei_Count"]) > 0
