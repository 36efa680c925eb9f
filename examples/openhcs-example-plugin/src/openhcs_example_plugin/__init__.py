"""Example openhcs-rules plugin: steps registered through the ``openhcs_rules.functions`` entry points."""
