"""The plate model: plates, wells, sites, channels, z-planes, timepoints and their canonical names."""

from openhcs_rules.plate.model import (
    COMPONENTS,
    ChannelInfo,
    ImageKey,
    ImageStructure,
    PlateStructure,
    WellStructure,
)
from openhcs_rules.plate.naming import (
    PLATE_LAYOUTS,
    layout_for_well_count,
    parse_virtual_filename,
    parse_well_name,
    row_name,
    virtual_filename,
    well_name,
)

__all__ = [
    "COMPONENTS",
    "ChannelInfo",
    "ImageKey",
    "ImageStructure",
    "PlateStructure",
    "WellStructure",
    "PLATE_LAYOUTS",
    "layout_for_well_count",
    "parse_virtual_filename",
    "parse_well_name",
    "row_name",
    "virtual_filename",
    "well_name",
]
