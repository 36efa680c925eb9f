"""Pipelines: steps (function, kwargs, variable components, group_by), safe loading by ast."""

from openhcs_rules.pipeline.model import Pipeline, Step
from openhcs_rules.pipeline.serialize import load_pipeline, parse_pipeline, pipeline_to_code

__all__ = ["Pipeline", "Step", "load_pipeline", "parse_pipeline", "pipeline_to_code"]
