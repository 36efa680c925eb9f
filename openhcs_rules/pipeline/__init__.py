"""Pipelines: steps (function, kwargs, variable components, group_by), safe loading by ast, memory types."""
