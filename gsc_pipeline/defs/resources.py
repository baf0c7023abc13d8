"""Resources: one GSC API resource per credential, and the warehouse.

A secret never enters a resource's config: the resource holds the name of the environment variable
(`key_env`) and reads it when a step creates its client, so the UI shows the name, never the value,
and an unset variable fails the step with a message naming it (not Dagster's EnvVar error).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import dagster as dg
from pydantic import PrivateAttr

from gsc_pipeline.config import CredentialConfig, PipelineConfig
from gsc_pipeline.constants import DEFAULT_STEP_MEMORY_MB
from gsc_pipeline.gsc import API_ENDPOINT_ENV, GscClient, load_credentials
from gsc_pipeline.gsc.errors import AuthError
from gsc_pipeline.gsc.rate_limit import quota_store
from gsc_pipeline.warehouse import (
    WAREHOUSE_URL_ENV,
    Warehouse,
    default_warehouse_url,
    open_warehouse,
    warehouse_url,
)


class GscApiResource(dg.ConfigurableResource):
    """Search Console API access for one credential, inside its quota budget."""

    # Empty means Google itself; the demo and tests point it at the bundled emulator.
    api_endpoint: str | None = None
    credential_kind: str = "none"
    # The environment variable holding the key JSON (or its base64), read in `client()`.
    credential_env: str | None = None
    credential_file: str | None = None
    # The credential's queries/min, one bucket shared by every step, process and host that
    # reaches the same quota store (`gsc.rate_limit.quota_store`); the pool only caps steps.
    qpm_budget: float
    step_concurrency: int
    step_memory_mb: int = DEFAULT_STEP_MEMORY_MB
    timeout_seconds: float = 120.0

    def client(
        self,
        stop_event: threading.Event | None = None,
        log: Callable[[str], None] | None = None,
    ) -> GscClient:
        credentials = load_credentials(
            kind=self.credential_kind,
            json_text=self._secret(),
            path=self.credential_file,
            source=f"environment variable {self.credential_env}" if self.credential_env else None,
        )
        return GscClient(
            endpoint=self.api_endpoint or None,
            credentials=credentials,
            qpm_budget=self.qpm_budget,
            quota_store=quota_store(warehouse_url()),
            timeout=self.timeout_seconds,
            stop_event=stop_event,
            log=log,
        )


    def _secret(self) -> str | None:
        if not self.credential_env:
            return None
        secret = os.environ.get(self.credential_env, "").strip()
        if not secret:
            raise AuthError(
                f"environment variable {self.credential_env} is unset or empty: export the "
                "service-account key JSON (or its base64) in it, in the environment of the "
                "Dagster code server and daemon (or set `key_file:` instead of `key_env:`)"
            )
        return secret


# Guards the first `WarehouseResource.open()` of a resource object (report threads ask at once).
_OPEN_LOCK = threading.Lock()


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse: a DuckDB file (default) or a PostgreSQL URL."""

    url: str
    # The tables' schema: a prefixed declaration keeps its tables apart from the others'.
    schema_name: str | None = None
    _opened: Warehouse | None = PrivateAttr(default=None)
    # A forked process opens its own (a DuckDB host's threads do not survive a fork).
    _opened_pid: int = PrivateAttr(default=0)

    def open(self) -> Warehouse:
        """The warehouse, one object for everything that uses this resource object: a run
        builds its resources once (in-process executor), so its steps, report threads and
        checks share the warehouse's connections and, on DuckDB, its in-memory host database
        and the tables it made sure of. A warehouse per caller cost a DuckDB fetch run 9
        hosts (~25 ms of CPU and ~4 MB each) and 18 catalog transactions (docs/bench/README.md,
        issue 14 stop 36). Both backends' warehouses are safe across threads.
        """
        with _OPEN_LOCK:
            if self._opened is None or self._opened_pid != os.getpid():
                self._opened = open_warehouse(self.url, schema=self.schema_name)
                self._opened_pid = os.getpid()
            return self._opened


def _env_or(name: str, default: str | None) -> str | dg.EnvVar | None:
    return dg.EnvVar(name) if os.environ.get(name) else default


def gsc_resource(credential: CredentialConfig) -> GscApiResource:
    return GscApiResource(
        api_endpoint=_env_or(API_ENDPOINT_ENV, None),
        credential_kind=credential.kind,
        credential_env=credential.key_env,
        credential_file=credential.key_file,
        qpm_budget=credential.qpm_budget,
        step_concurrency=credential.step_concurrency,
        step_memory_mb=credential.step_memory_mb,
    )


def warehouse_resource(schema: str | None = None) -> WarehouseResource:
    # Checked when the definitions load, so the code location shows the error at once instead
    # of a run failing later; runs still read the value through EnvVar (never shown in the UI).
    warehouse_url()
    return WarehouseResource(
        url=_env_or(WAREHOUSE_URL_ENV, default_warehouse_url()), schema_name=schema
    )


def gsc_resource_key(config: PipelineConfig, credential_name: str) -> str:
    return config.namespaced(f"gsc_{credential_name}")


def warehouse_resource_key(config: PipelineConfig) -> str:
    return config.namespaced("warehouse")
