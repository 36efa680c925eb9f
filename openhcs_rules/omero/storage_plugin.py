"""Snakemake storage plugin ``omero``: plate discovery and small artifacts on an OMERO server.

Queries::

    omero://HOST[:PORT]/plate/ID/plate.json              the plate's structure (read only: discovery)
    omero://HOST[:PORT]/plate/ID/PATH.{csv,json,tsv,txt} a FileAnnotation on the plate, a well or a field
    omero://HOST[:PORT]/plate/ID/derived/PATH...         the same on the plate's derived (results) plate

``PATH`` names its object as result paths do everywhere (see :mod:`openhcs_rules.omero.annotations`):
``wells.csv`` -> the plate, ``B03/summary.json`` -> well B03, ``B03_s002_cells.tsv`` -> field 2 of B03.
Pixels never travel through Snakemake storage: jobs read and write them in place through ``omero_local``.

Snakemake finds the plugin as the top-level module ``snakemake_storage_plugin_omero``, which re-exports
the three classes below. The password is read from ``--storage-omero-password-env`` (default
``OMERO_PASSWORD``) or ``--storage-omero-password-file``; it is never a plugin setting itself.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_storage_plugins.common import Operation
from snakemake_interface_storage_plugins.io import IOCacheStorageInterface, Mtime
from snakemake_interface_storage_plugins.settings import StorageProviderSettingsBase
from snakemake_interface_storage_plugins.storage_object import StorageObjectRead, StorageObjectWrite
from snakemake_interface_storage_plugins.storage_provider import (
    ExampleQuery,
    QueryType,
    StorageProviderBase,
    StorageQueryValidationResult,
)

from openhcs_rules.omero.params import DEFAULT_PORT, OmeroParams

_QUERY_RE = re.compile(
    r"^omero://(?P<host>[A-Za-z0-9._-]+|\{[^{}/]+\})(?::(?P<port>\d+))?/plate/(?P<plate>\d+|\{[^{}/]+\})"
    r"/(?P<derived>derived/)?(?P<path>[^?#]+)$"
)
_ARTIFACT_SUFFIXES = (".csv", ".json", ".tsv", ".txt")
PLATE_JSON = "plate.json"


@dataclass
class StorageProviderSettings(StorageProviderSettingsBase):
    user: str | None = field(default="root", metadata={"help": "OMERO user name", "env_var": False, "required": False})
    password_env: str | None = field(
        default="OMERO_PASSWORD",
        metadata={"help": "environment variable that holds the password", "env_var": False, "required": False},
    )
    password_file: str | None = field(
        default=None, metadata={"help": "file that holds the password", "env_var": False, "required": False}
    )
    secure: bool | None = field(
        default=True, metadata={"help": "keep the connection encrypted", "env_var": False, "required": False}
    )
    output: str | None = field(
        default="openhcs-rules",
        metadata={"help": "name of the derived plate's output (for .../derived/...)", "env_var": False},
    )


@dataclass(frozen=True)
class ParsedQuery:
    host: str
    port: int
    plate_id: int
    derived: bool
    path: str


def _match(query: str) -> re.Match[str]:
    """Check the query's shape (wildcards allowed in host, plate id and path)."""
    match = _QUERY_RE.match(query)
    if not match:
        raise WorkflowError(f"{query!r} is not an OMERO query like omero://host:4064/plate/42/wells.csv")
    path = match.group("path").strip("/")
    if path != PLATE_JSON and not path.lower().endswith(_ARTIFACT_SUFFIXES):
        raise WorkflowError(f"{query}: only plate.json and {', '.join(_ARTIFACT_SUFFIXES)} files are OMERO storage")
    if path == PLATE_JSON and match.group("derived"):
        raise WorkflowError(f"{query}: plate.json describes the source plate; drop 'derived/'")
    return match


def parse_query(query: str) -> ParsedQuery:
    """A concrete query (no wildcards left) as its parts."""
    match = _match(query)
    if not match.group("plate").isdigit():
        raise WorkflowError(f"{query}: the plate id must be a number once wildcards are filled in")
    return ParsedQuery(
        match.group("host"),
        int(match.group("port") or DEFAULT_PORT),
        int(match.group("plate")),
        bool(match.group("derived")),
        match.group("path").strip("/"),
    )


class StorageProvider(StorageProviderBase):
    """Holds one OMERO session per server for all storage objects of a Snakemake process."""

    def __post_init__(self) -> None:
        self._sessions: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def example_queries(cls) -> list[ExampleQuery]:
        return [
            ExampleQuery("omero://localhost:4064/plate/42/plate.json", "structure of OMERO plate 42", QueryType.INPUT),
            ExampleQuery(
                "omero://localhost:4064/plate/42/derived/wells.csv",
                "per-well table attached to the results plate of plate 42",
                QueryType.ANY,
            ),
            ExampleQuery(
                "omero://localhost:4064/plate/42/derived/B03/summary.json",
                "a well's summary attached to well B03 of the results plate",
                QueryType.ANY,
            ),
        ]

    def rate_limiter_key(self, query: str, operation: Operation) -> Any:
        return _match(query).group("host")

    def default_max_requests_per_second(self) -> float:
        return 20.0

    def use_rate_limiter(self) -> bool:
        return False

    @classmethod
    def is_valid_query(cls, query: str) -> StorageQueryValidationResult:
        try:
            _match(query)
        except WorkflowError as exc:
            return StorageQueryValidationResult(query=query, valid=False, reason=str(exc))
        return StorageQueryValidationResult(query=query, valid=True)

    def params(self, host: str, port: int) -> OmeroParams:
        settings = self.settings
        return OmeroParams(
            host=host,
            port=port,
            user=getattr(settings, "user", None) or "root",
            password_env=getattr(settings, "password_env", None),
            password_file=getattr(settings, "password_file", None),
            secure=bool(getattr(settings, "secure", True)),
        )

    def session(self, host: str, port: int) -> Any:
        from openhcs_rules.omero.adapter import OmeroSession

        with self._lock:
            key = (host, port)
            if key not in self._sessions:
                self._sessions[key] = OmeroSession(self.params(host, port))
            return self._sessions[key]

    @property
    def output(self) -> str:
        return getattr(self.settings, "output", None) or "openhcs-rules"


class StorageObject(StorageObjectRead, StorageObjectWrite):
    """One plate.json or one FileAnnotation."""

    def __post_init__(self) -> None:
        self.parsed = parse_query(self.query)

    # -- helpers -------------------------------------------------------------------------------------------
    @property
    def provider_(self) -> StorageProvider:
        return self.provider  # type: ignore[return-value]  # the base class types it as its own base provider

    def _session(self) -> Any:
        return self.provider_.session(self.parsed.host, self.parsed.port)

    def _structure(self) -> Any:
        from openhcs_rules.omero.structure import load_plate_structure

        params = self.provider_.params(self.parsed.host, self.parsed.port)
        return load_plate_structure(params, self.parsed.plate_id, session=self._session())

    def _plate_ref(self, create: bool) -> Any:
        from openhcs_rules.omero.derived import NS_DERIVED, derived_key, ensure_derived_plate, plate_ref

        session = self._session()
        if not self.parsed.derived:
            return plate_ref(session, self.parsed.plate_id)
        if create:
            return ensure_derived_plate(session, self._structure(), self.provider_.output)
        ids = session.find_tagged_plates(NS_DERIVED, derived_key(self.parsed.plate_id, self.provider_.output))
        return plate_ref(session, min(ids)) if ids else None

    def _target(self, create: bool = False) -> tuple[str, int] | None:
        from openhcs_rules.omero.annotations import resolve, target_for_path
        from openhcs_rules.omero.errors import OmeroNotFoundError

        ref = self._plate_ref(create)
        if ref is None:
            return None
        try:
            return resolve(self._session(), ref, target_for_path(self.parsed.path))
        except OmeroNotFoundError:
            if create:
                raise
            return None

    @property
    def _name(self) -> str:
        return self.parsed.path.rsplit("/", 1)[-1]

    def _record(self) -> Any:
        from openhcs_rules.omero.annotations import find_annotation

        target = self._target()
        if target is None:
            return None
        found = find_annotation(self._session(), target[0], target[1], self._name)
        return found[-1] if found else None

    def _plate_json(self) -> bytes | None:
        from openhcs_rules.omero.errors import OmeroNotFoundError

        try:
            return json.dumps(self._structure().to_dict(), indent=1).encode()
        except OmeroNotFoundError:
            return None

    # -- StorageObjectRead --------------------------------------------------------------------------------
    async def inventory(self, cache: IOCacheStorageInterface) -> None:
        key = self.cache_key()
        if key in cache.exists_in_storage:
            return
        if self.parsed.path == PLATE_JSON:
            data = self._plate_json()
            cache.exists_in_storage[key] = data is not None
            if data is not None:
                cache.mtime[key] = Mtime(storage=0.0)
                cache.size[key] = len(data)
            return
        record = self._record()
        cache.exists_in_storage[key] = record is not None
        if record is not None:
            cache.mtime[key] = Mtime(storage=(record.created_ms or 0) / 1000.0)
            cache.size[key] = record.size

    def get_inventory_parent(self) -> str | None:
        return None

    def local_suffix(self) -> str:
        p = self.parsed
        return f"{p.host}_{p.port}/plate_{p.plate_id}/{'derived/' if p.derived else ''}{p.path}"

    def cleanup(self) -> None:
        """Nothing is kept outside the local copy that Snakemake manages."""

    def exists(self) -> bool:
        if self.parsed.path == PLATE_JSON:
            return self._plate_json() is not None
        return self._record() is not None

    def mtime(self) -> float:
        if self.parsed.path == PLATE_JSON:
            return 0.0  # the structure is an input that only changes when the plate is re-imported
        record = self._record()
        return (record.created_ms or 0) / 1000.0 if record else 0.0

    def size(self) -> int:
        if self.parsed.path == PLATE_JSON:
            data = self._plate_json()
            return len(data) if data else 0
        record = self._record()
        return record.size if record else 0

    def checksum(self) -> str | None:
        record = None if self.parsed.path == PLATE_JSON else self._record()
        return f"sha1:{record.sha1}" if record is not None and record.sha1 else None

    def retrieve_object(self) -> None:
        from openhcs_rules.core.files import atomic_write_bytes

        if self.parsed.path == PLATE_JSON:
            data = self._plate_json()
            if data is None:
                raise WorkflowError(f"{self.query}: OMERO plate {self.parsed.plate_id} does not exist")
        else:
            record = self._record()
            if record is None:
                raise WorkflowError(f"{self.query}: no such FileAnnotation")
            data = self._session().download_file(record.file_id, record.size)
        atomic_write_bytes(self.local_path(), data)

    # -- StorageObjectWrite -------------------------------------------------------------------------------
    def store_object(self) -> None:
        from openhcs_rules.omero.annotations import put_file

        if self.parsed.path == PLATE_JSON:
            raise WorkflowError(f"{self.query}: plate.json is read-only (it describes the plate on the server)")
        local = self.local_path()
        if not local.is_file():
            raise WorkflowError(f"{self.query}: only files can be stored in OMERO, {local} is not one")
        target = self._target(create=True)
        assert target is not None
        put_file(self._session(), target[0], target[1], self._name, local.read_bytes())

    def remove(self) -> None:
        from openhcs_rules.omero.annotations import find_annotation

        if self.parsed.path == PLATE_JSON:
            raise WorkflowError(f"{self.query}: plate.json is read-only")
        target = self._target()
        if target is None:
            return
        found = find_annotation(self._session(), target[0], target[1], self._name)
        self._session().delete("Annotation", [r.annotation_id for r in found])
