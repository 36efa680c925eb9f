"""Count and measure nuclei: flat-field and background correction, best-focus plane, denoise, segment, measure."""

from openhcs_rules.pipeline import Pipeline, Step

pipeline = Pipeline(
    name="nuclei_count",
    steps=[
        Step(name="flatfield", func="flatfield_correct"),
        Step(name="background", func="subtract_background", kwargs={"radius": 50}),
        Step(name="best_focus", func="project_z", kwargs={"method": "best_focus"}),
        Step(name="denoise", func="denoise", kwargs={"sigma": 0.5}),
        Step(name="segment", func="segment_nuclei", channel="nuclei"),
        Step(name="measure", func="measure_objects"),
    ],
)
