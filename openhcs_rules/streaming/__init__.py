"""Live viewers, the job side: frame senders (shared memory on one host, compressed inline across hosts), the
frame format and its codecs, the pipeline hook, and viewer start-up. Nothing here imports napari/Qt or a JVM:
the code that runs inside the viewer processes is :mod:`openhcs_rules.viewers`."""
