"""The screen config: validation against the workflow's JSON schema, defaults, readable errors."""

from openhcs_rules.config.validate import default_schema_path, load_screen_config, validate_screen_config

__all__ = ["default_schema_path", "load_screen_config", "validate_screen_config"]
