"""Synthetic plates written the way instruments write them, for format tests (structure from real exports).

- :mod:`~openhcs_rules_testkit.instruments.harmony`: Harmony V5/V6/V7 exports (Opera Phenix, Operetta CLS);
- :mod:`~openhcs_rules_testkit.instruments.metaxpress`: an ImageXpress (MetaXpress) direct-transfer plate;
- :mod:`~openhcs_rules_testkit.instruments.cellvoyager`: Yokogawa CellVoyager (CV7000/CV8000/CQ1) measurements.
"""
