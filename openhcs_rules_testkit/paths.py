"""The repository's folders, for tests and benchmarks wherever they live (no ``Path(__file__).parents[n]``)."""

from __future__ import annotations

from pathlib import Path

#: the repository root (this package sits directly below it)
REPO = Path(__file__).resolve().parents[1]
#: the workflow every Snakemake run uses
SNAKEFILE = REPO / "workflow" / "Snakefile"
#: the bundled default pipeline (nuclei counting)
PIPELINE = REPO / "config" / "pipelines" / "nuclei_count.py"
#: small data committed with the tests (annotated nuclei images, see its README)
TEST_DATA = REPO / "tests" / "data"
#: real instrument plates, shared next to the repository (``../shared/fixtures``), never copied into it
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
