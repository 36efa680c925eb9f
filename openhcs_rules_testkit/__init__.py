"""Test and benchmark support for openhcs-rules: what ``tests/`` and ``bench/`` both import.

- :mod:`~openhcs_rules_testkit.paths`: the repository's folders (root, Snakefile, bundled pipeline, test data);
- :mod:`~openhcs_rules_testkit.workflow`: the one way to run the Snakemake CLI on a screen config;
- :mod:`~openhcs_rules_testkit.instruments`: synthetic plates in instrument formats (Harmony, MetaXpress,
  CellVoyager);
- :mod:`~openhcs_rules_testkit.ngff`: OME-NGFF validation of written plates and images;
- :mod:`~openhcs_rules_testkit.accuracy`: object-level scores of a segmentation against annotations;
- :mod:`~openhcs_rules_testkit.slurm`: reading back what a test's run submitted to Slurm;
- :mod:`~openhcs_rules_testkit.execution`: an execution server on a tiny synthetic screen;
- :mod:`~openhcs_rules_testkit.frames`: inline frame headers as a remote sender writes them;
- :mod:`~openhcs_rules_testkit.omero_standin`: a stand-in OMERO server behind a BlitzGateway-compatible class.

Why it is not part of the installed package: it lives at the repository root next to ``openhcs_rules/``,
and ``[tool.setuptools.packages.find]`` in pyproject.toml includes only ``openhcs_rules`` and its
subpackages, so a wheel or a non-editable install never contains it. Above all the OMERO stand-in must
never be reachable from a user's configuration: the package only honours ``OPENHCS_RULES_OMERO_GATEWAY``,
an environment variable the tests set, to pick a gateway class. ``openhcs_rules`` never imports this
package (a ``forbidden`` contract under ``[tool.importlinter]``). Tests find it through pytest's
``pythonpath = ["."]``; the benchmarks through ``bench/_paths.py``; Snakemake jobs and other subprocesses
through the repository root on ``PYTHONPATH`` (:func:`openhcs_rules_testkit.workflow.snakemake_env`).
"""
