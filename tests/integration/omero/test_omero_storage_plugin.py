"""The Snakemake storage plugin, through the interface's own TestStorageBase, against the stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from snakemake_interface_storage_plugins.tests import TestStorageBase

import snakemake_storage_plugin_omero as plugin
from openhcs_rules_testkit.omero_standin.data import random_fields

pytest_plugins = ["openhcs_rules_testkit.omero_standin.fixtures"]


class TestOmeroStorage(TestStorageBase):
    __test__ = True
    retrieve_only = False
    store_only = False
    delete = True
    files_only = True

    @pytest.fixture(autouse=True)
    def _server(self, omero_server) -> None:
        imported = omero_server.import_plate("sp", 8, 12, random_fields(["B02"], 1, (1, 1, 1, 8, 8)))
        self.plate_id = imported.plate_id
        self.host, self.port = omero_server.params.host, omero_server.params.port

    def get_storage_provider_cls(self):  # noqa: ANN201
        return plugin.StorageProvider

    def get_storage_provider_settings(self):  # noqa: ANN201
        return plugin.StorageProviderSettings(user="root", password_env="OMERO_PASSWORD")

    def get_query(self, tmp_path) -> str:  # noqa: ANN001
        return f"omero://{self.host}:{self.port}/plate/{self.plate_id}/B02/test.txt"

    def get_query_not_existing(self, tmp_path) -> str:  # noqa: ANN001
        return f"omero://{self.host}:{self.port}/plate/{self.plate_id}/B02/never-written.txt"


def _provider(tmp_path: Path):  # noqa: ANN202
    import logging

    return plugin.StorageProvider(
        logger=logging.getLogger("test"),
        local_prefix=tmp_path / "prefix",
        settings=plugin.StorageProviderSettings(user="root", password_env="OMERO_PASSWORD"),
    )


def test_plate_json_is_discovery(omero_server, tmp_path: Path) -> None:
    imported = omero_server.import_plate("sp", 8, 12, random_fields(["B02", "AA01"], 2, (1, 2, 1, 8, 8)))
    provider = _provider(tmp_path)
    obj = provider.object(f"omero://localhost:4064/plate/{imported.plate_id}/plate.json")
    assert obj.exists()
    obj.retrieve_object()
    data = json.loads(obj.local_path().read_text())
    assert data["format"] == "omero" and sorted(data["wells"]) == ["AA01", "B02"]
    missing = provider.object("omero://localhost:4064/plate/999999/plate.json")
    assert not missing.exists()


def test_derived_artifacts_go_to_the_results_plate(omero_server, tmp_path: Path) -> None:
    imported = omero_server.import_plate("sp", 8, 12, random_fields(["B02"], 1, (1, 1, 1, 8, 8)))
    provider = _provider(tmp_path)
    obj = provider.object(f"omero://localhost:4064/plate/{imported.plate_id}/derived/wells.csv")
    assert not obj.exists()  # no derived plate yet: does not exist, is not an error
    obj.local_path().parent.mkdir(parents=True, exist_ok=True)
    obj.local_path().write_text("well,n\nB02,3\n")
    obj.store_object()
    assert obj.exists() and obj.size() == len("well,n\nB02,3\n")
    assert obj.checksum().startswith("sha1:")
    from openhcs_rules.omero.adapter import OmeroSession
    from openhcs_rules.omero.annotations import NS_RESULTS
    from openhcs_rules.omero.derived import NS_DERIVED, derived_key

    with OmeroSession(omero_server.params) as session:
        (derived,) = session.find_tagged_plates(NS_DERIVED, derived_key(imported.plate_id, "openhcs-rules"))
        assert [r.name for r in session.file_annotations("plate", derived, NS_RESULTS)] == ["wells.csv"]
        assert session.file_annotations("plate", imported.plate_id, NS_RESULTS) == []


@pytest.mark.parametrize(
    "query",
    [
        "omero://host/plate/42/image.tif",
        "omero://host/dataset/42/a.csv",
        "omero://host/plate/abc/a.csv",
        "s3://bucket/a.csv",
        "omero://host/plate/42/derived/plate.json",
    ],
)
def test_invalid_queries(query: str) -> None:
    assert not plugin.StorageProvider.is_valid_query(query)


def test_valid_queries_including_wildcards() -> None:
    for query in ["omero://h:4064/plate/42/B03/summary.json", "omero://h/plate/{plate_id}/derived/{well}/x.tsv"]:
        assert plugin.StorageProvider.is_valid_query(query), query


def test_snakemake_finds_the_plugin_by_its_module_name() -> None:
    from snakemake_interface_storage_plugins.registry import StoragePluginRegistry

    found = StoragePluginRegistry().get_plugin("omero")
    assert found.storage_provider is plugin.StorageProvider
    assert found.storage_object is plugin.StorageObject
