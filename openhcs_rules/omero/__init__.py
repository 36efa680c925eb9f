"""OMERO: connection parameters, the omero-py adapter, plate-structure cache, pixel reads, derived-plate writes,
FileAnnotations, the instance manager and the zeroc-ice wheel builder."""
