"""The code that runs inside viewer processes: the viewer server (control + data channels, frame queue), the
napari, Fiji (ImageJ over a JVM) and record viewers, their layout and display helpers.

Each viewer is a process of its own, started as ``python -m openhcs_rules.viewers.<kind>_viewer``
(:func:`openhcs_rules.streaming.ensure.viewer_command`); well jobs and the CLI never import this package.
"""
