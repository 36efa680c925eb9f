import numpy as np
import pytest

from openhcs_rules.errors import PipelineError
from openhcs_rules.pipeline import Pipeline, Step
from openhcs_rules.pipeline.executor import RunContext, run_pipeline


def _planes(sites=(1,), channels=(1, 2), zs=(1, 2, 3)):
    rng = np.random.default_rng(0)
    return {(s, c, z, 1): rng.random((32, 32)).astype(np.float32) * 100 for s in sites for c in channels for z in zs}


CONTEXT = RunContext(channel_names={1: "DAPI", 2: "FITC"})


def test_projection_collapses_z_to_one_plane_per_site_and_channel():
    planes = _planes()
    result = run_pipeline(Pipeline("p", [Step(func="project_z", kwargs={"method": "max"})]), planes, CONTEXT)
    assert sorted(result.images) == [(1, 1, 1, 1), (1, 2, 1, 1)]
    expected = np.max([planes[(1, 2, z, 1)] for z in (1, 2, 3)], axis=0)
    np.testing.assert_array_equal(result.images[(1, 2, 1, 1)], expected)


def test_per_channel_functions_leave_unnamed_channels_untouched():
    planes = _planes(zs=(1,))
    step = Step(func={"FITC": "denoise"}, kwargs={"sigma": 2.0}, group_by="channel")
    result = run_pipeline(Pipeline("p", [step]), planes, CONTEXT)
    np.testing.assert_array_equal(result.images[(1, 1, 1, 1)], planes[(1, 1, 1, 1)])
    assert not np.allclose(result.images[(1, 2, 1, 1)], planes[(1, 2, 1, 1)])


def test_segmentation_and_measurement_give_object_rows_per_site():
    image = np.zeros((64, 64), np.float32)
    image[10:20, 10:20] = 1000
    image[40:50, 30:44] = 1000
    planes = {(s, c, 1, 1): image * c for s in (1, 2) for c in (1, 2)}
    pipeline = Pipeline(
        "p", [Step(func="segment_nuclei", channel="nuclei", kwargs={"diameter": 10.0}), Step(func="measure_objects")]
    )
    result = run_pipeline(pipeline, planes, RunContext(channel_names={1: "DAPI", 2: "FITC"}, nuclei_channel="DAPI"))
    assert sorted(result.labels) == [(1, 1, 1), (2, 1, 1)]
    assert [row["site"] for row in result.objects] == [1, 1, 2, 2]
    areas = sorted(row["area_px"] for row in result.objects if row["site"] == 1)
    assert areas == pytest.approx([100, 140], rel=0.25)  # segmentation smooths edges; exact areas: measurement tests
    ratio = [row["mean_intensity_FITC"] / row["mean_intensity_DAPI"] for row in result.objects]
    assert ratio == pytest.approx([2.0] * 4)


def test_flatfield_uses_the_profile_of_each_channel():
    planes = _planes(zs=(1,))
    profile = np.full((32, 32), 2.0, np.float32)
    context = RunContext(channel_names={1: "DAPI", 2: "FITC"}, illumination={1: profile, 2: profile * 2})
    result = run_pipeline(Pipeline("p", [Step(func="flatfield_correct")]), planes, context)
    np.testing.assert_allclose(result.images[(1, 1, 1, 1)], planes[(1, 1, 1, 1)] / 2, rtol=1e-5)
    np.testing.assert_allclose(result.images[(1, 2, 1, 1)], planes[(1, 2, 1, 1)] / 4, rtol=1e-5)


def test_unknown_channel_is_a_clear_error():
    with pytest.raises(PipelineError, match="channel 'GFP' is not in this plate; channels: 1 \\(DAPI\\), 2 \\(FITC\\)"):
        run_pipeline(Pipeline("p", [Step(func="denoise", channel="GFP")]), _planes(zs=(1,)), CONTEXT)
