"""Profile cells: nuclei_count's steps, then nuclei, cells and cytoplasm measured the CellProfiler way.

The cells are grown from the nuclei into the plate's second channel (the cell-body stain: FITC in the demo
plate; ``cell_channel`` is a 1-based position among the plate's channels, or a channel name), and every
compartment gets shape, intensity (all channels) and Haralick texture features (``Nuclei_``, ``Cells_``,
``Cytoplasm_`` columns of objects.csv, next to the usual area, centroid and intensity columns).
"""

from openhcs_rules.pipeline import Pipeline, Step

pipeline = Pipeline(
    name="cell_profile",
    steps=[
        Step(name="flatfield", func="flatfield_correct"),
        Step(name="background", func="subtract_background", kwargs={"radius": 50}),
        Step(name="best_focus", func="project_z", kwargs={"method": "best_focus"}),
        Step(name="denoise", func="denoise", kwargs={"sigma": 0.5}),
        Step(name="segment", func="segment_nuclei", channel="nuclei"),
        Step(name="measure", func="measure_compartments", kwargs={"cell_channel": 2, "texture_scale": 3}),
    ],
)
