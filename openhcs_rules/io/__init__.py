"""Storage backends behind one interface: disk, memory, OME-Zarr and the VirtualBackend base."""
