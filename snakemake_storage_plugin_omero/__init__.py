"""Snakemake storage plugin ``omero`` (shipped by openhcs-rules): discovery and small artifacts on OMERO.

Snakemake discovers storage plugins by this top-level module name; the code lives in
:mod:`openhcs_rules.omero.storage_plugin`.
"""

from openhcs_rules.omero.storage_plugin import StorageObject, StorageProvider, StorageProviderSettings

__all__ = ["StorageObject", "StorageProvider", "StorageProviderSettings"]
