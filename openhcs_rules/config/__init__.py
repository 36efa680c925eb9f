"""The screen config: validation against the workflow's JSON schema, defaults, readable errors, machine checks."""

from openhcs_rules.config.checks import check_screen, check_screen_file
from openhcs_rules.config.validate import default_schema_path, load_screen_config, validate_screen_config

__all__ = ["check_screen", "check_screen_file", "default_schema_path", "load_screen_config", "validate_screen_config"]
