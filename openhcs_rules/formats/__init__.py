"""Microscope handlers: detect and parse ImageXpress, Opera Phenix and OME-Zarr HCS plates."""
