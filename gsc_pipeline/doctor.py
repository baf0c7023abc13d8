"""`gsc-pipeline doctor`: is this deployment able to fetch and store? Config, warehouse,
credentials, reachability, per-property permission — each line says what is wrong and what to
do."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from gsc_pipeline.config import ConfigError, PipelineConfig, load_declarations
from gsc_pipeline.gsc import API_ENDPOINT_ENV, GscClient, GscError, RetryPolicy, load_credentials
from gsc_pipeline.search_calendar import pacific_today
from gsc_pipeline.warehouse import (
    WAREHOUSE_URL_ENV,
    WarehouseUrlError,
    open_warehouse,
    redact_url,
    warehouse_url,
)

READABLE = {"siteOwner", "siteFullUser", "siteRestrictedUser"}


@dataclass
class Finding:
    ok: bool
    what: str

    def __str__(self) -> str:
        return f"  [{'ok' if self.ok else 'FAIL'}] {self.what}"


def diagnose(config: PipelineConfig, endpoint: str | None) -> list[Finding]:
    findings: list[Finding] = []
    where = endpoint or "Google (https://searchconsole.googleapis.com/)"
    for name, cred in config.credentials.items():
        props = [p for p in config.properties if p.credential == name]
        try:
            secret = os.environ.get(cred.key_env) if cred.key_env else None
            if cred.key_env and not secret:
                raise GscError(
                    f"environment variable {cred.key_env} is empty or unset; export "
                    "the key JSON (raw or base64) in it"
                )
            credentials = load_credentials(
                cred.kind,
                json_text=secret,
                path=cred.key_file,
                source=f"environment variable {cred.key_env}",
            )
        except GscError as exc:
            findings.append(Finding(False, f"credential {name!r}: {exc}"))
            continue
        findings.append(
            Finding(
                True,
                f"credential {name!r}: {cred.kind} loaded; pool "
                f"{config.pools[name]} limit {cred.pool_limit}, budget "
                f"{cred.qpm_budget:.0f}/min shared by every step",
            )
        )
        # Few attempts: the doctor should answer in seconds, not retry for minutes.
        client = GscClient(
            endpoint,
            credentials,
            qpm_budget=60,
            timeout=20,
            retry_policy=RetryPolicy(max_attempts=2, quota_retry_seconds=5, load_retry_seconds=0),
        )
        try:
            sites = {s["siteUrl"]: s.get("permissionLevel") for s in client.list_sites()}
        except GscError as exc:
            findings.append(Finding(False, f"{where} unreachable with credential {name!r}: {exc}"))
            continue
        findings.append(
            Finding(
                True,
                f"{where} reachable; the credential sees "
                f"{_plural(len(sites), 'property', 'properties')}",
            )
        )
        for prop in props:
            findings.append(_check_property(client, prop.site_url, sites))
    return findings


def _check_property(client: GscClient, site_url: str, sites: dict[str, str]) -> Finding:
    level = sites.get(site_url)
    if level is None:
        near = [s for s in sites if s.split(":")[-1].strip("/") in site_url]
        hint = f" (did you mean {near[0]!r}? domain and URL-prefix forms differ)" if near else ""
        return Finding(
            False,
            f"{site_url}: not in this credential's Search Console account"
            f"{hint}; add the credential's email as a user of the property",
        )
    if level not in READABLE:
        return Finding(
            False,
            f"{site_url}: permission {level} cannot read search analytics; "
            "verify ownership or ask an owner to add the credential as a user",
        )
    day = (pacific_today() - dt.timedelta(days=5)).isoformat()  # Search Console's calendar
    try:
        client.query(site_url, {"startDate": day, "endDate": day, "rowLimit": 1})
    except GscError as exc:
        return Finding(False, f"{site_url}: a test query failed: {exc}")
    return Finding(True, f"{site_url}: {level}, test query ok")


def check_warehouse() -> Finding:
    """Can the pipeline store? Connect and create, fill and drop a scratch table, in one
    transaction, and remove a DuckDB file the check itself created (so nothing is left behind)."""
    try:
        url = warehouse_url()
        warehouse = open_warehouse(url)
    except WarehouseUrlError as exc:
        return Finding(False, f"warehouse: {exc}")
    shown = redact_url(url)
    table = f"gsc_doctor_scratch_{uuid.uuid4().hex[:8]}"
    # The files it stores in (a DuckDB file and its log), when this check is what creates them.
    new_files = [f for f in warehouse.local_files() if not f.exists()]
    try:
        with warehouse.transaction() as conn:
            conn.execute(f"CREATE TABLE {table} (x INTEGER)")
            conn.execute(f"INSERT INTO {table} VALUES (1)")
            conn.execute(f"DROP TABLE {table}")
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises, it cannot write
        fix = warehouse.unwritable_hint
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Finding(
            False,
            f"warehouse {shown} ({WAREHOUSE_URL_ENV}): cannot connect and write "
            f"({type(exc).__name__}: {detail}); {fix}",
        )
    finally:
        for created in new_files:
            created.unlink(missing_ok=True)
    return Finding(True, f"warehouse {shown}: connected, created and dropped a scratch table")


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def run_doctor(config_path: str | None = None, cwd: Path | None = None) -> int:
    """Check the declarations `load_declarations` finds from `cwd`: `--config`, else the dg
    project's GscComponents, else (outside a project, said so) the bundled demo."""
    print("gsc-pipeline doctor")
    try:
        declarations = load_declarations(config_path, cwd or Path.cwd())
    except ConfigError as exc:
        print(f"  [FAIL] config: {exc}")
        return 1
    print(f"  {declarations.origin}")
    findings = [check_warehouse()]
    for path, config in declarations.configs.items():
        print(
            f"  [ok] config {path}: {_plural(len(config.properties), 'property', 'properties')}, "
            f"{_plural(len(config.credentials), 'credential', 'credentials')}, "
            f"start {config.start_date}"
        )
        findings += diagnose(config, os.environ.get(API_ENDPOINT_ENV) or None)
    for finding in findings:
        print(finding)
    bad = sum(not f.ok for f in findings)
    print("  all good" if not bad else f"  {bad} problem(s): fix the FAIL lines above")
    return 1 if bad else 0
