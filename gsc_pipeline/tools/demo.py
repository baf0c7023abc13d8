"""The main job: a real backfill of the demo properties from the bundled emulator.

Starts the emulator (its own process, like a remote API), sets up a Dagster instance with the
pool limit set explicitly, launches the backfill as the UI does (GraphQL), lets the real daemon
run it through the run queue and the pool, and prints what landed in the DuckDB warehouse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml

from gsc_pipeline import instance as instance_templates
from gsc_pipeline.config import BUNDLED_DEMO_CONFIG, CONFIG_ENV, PipelineConfig, load_config
from gsc_pipeline.constants import GOOGLE_TIMEZONE
from gsc_pipeline.defs.names import BACKFILL_TAG
from gsc_pipeline.emulator.testing import EmulatorHandle
from gsc_pipeline.gsc.client import API_ENDPOINT_ENV
from gsc_pipeline.instance import init_instance
from gsc_pipeline.reports import Report
from gsc_pipeline.search_calendar import pacific_today
from gsc_pipeline.sitemaps import SITEMAPS_TABLE
from gsc_pipeline.tools.launch import BackfillProgress, launch_backfills, wait_for_backfill
from gsc_pipeline.warehouse import WAREHOUSE_URL_ENV, Warehouse, open_warehouse

_URL_RE = re.compile(r"https?://\S+/")
# The demo's declaration (the bundled one, partitions starting at the demo's first day).
DEMO_DECLARATION = "gsc.yaml"
LOCAL_UI_SITE = Path(instance_templates.__file__).parent / "local_ui"
TICK_ENV = "GSC_BACKFILL_TICK_SECONDS"
# Dagster's daemon loops over backfills every 30 s; a UI backfill of a few days then waits ~50 s
# for seconds of work, and a backfill is marked finished up to 30 s after its last run ended.
# The local instance's daemon (the UI's and the demo's) ticks every 3 s (see short_tick_env).
LOCAL_BACKFILL_TICK_SECONDS = 3


@contextlib.contextmanager
def emulator_process(*args: str, log: Path | None = None) -> Iterator[EmulatorHandle]:
    """Run `gsc-pipeline emulator` as a subprocess on a free port; yield a handle to it."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsc_pipeline.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=out,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        match = _URL_RE.search(line)
        if not match:
            raise RuntimeError(f"the emulator did not start (it printed {line!r}); see {log}")
        handle = EmulatorHandle.connect(match.group(0))
        handle.pid = proc.pid
        yield handle
    finally:
        _stop(proc, timeout=10)
        if log:
            out.close()


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM (the emulator shuts down cleanly on it), then SIGKILL."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def _stop_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to the process group `proc` leads (started with start_new_session=True: the
    daemon's or dg dev's webserver, daemon and code servers), then SIGKILL to what is left.

    Signalling `proc` alone left its children running: dg dev does not pass SIGTERM on.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    # The children shut down on their own after the leader; wait for the group to empty.
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGINT end the command through its `finally` blocks, which stop every
    process it started (Python's default SIGTERM ends it at once and leaves them running).
    A second signal while stopping is ignored, so the stop itself runs to its end."""

    def stop(signum: int, _frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def short_tick_env(backfill_tick_seconds: int) -> dict[str, str]:
    """Environment for Dagster processes whose daemon loops every `backfill_tick_seconds`
    instead of its fixed 30 s (see gsc_pipeline/instance/local_ui/sitecustomize.py)."""
    path = [str(LOCAL_UI_SITE), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path), TICK_ENV: str(backfill_tick_seconds)}


@contextlib.contextmanager
def dagster_daemon(
    home: Path, log: Path, backfill_tick_seconds: int | None = None
) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` on `home`'s instance and workspace.

    `backfill_tick_seconds` shortens the backfill loop's fixed 30 s sleep; tests use it so they
    wait for the pipeline, not for the clock.
    """
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    if backfill_tick_seconds is not None:
        env.update(short_tick_env(backfill_tick_seconds))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            # One code server for the session, not a new one every 60 s (see daemon_host).
            [sys.executable, "-m", "gsc_pipeline.tools.daemon_host", str(home / "workspace.yaml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its code server with it: stopped as one group
        )
        try:
            yield proc
        finally:
            _stop_group(proc, timeout=30)


def final_days(count: int, final_lag_days: int = 3) -> list[str]:
    """The last `count` days Google already reports as final (Pacific Time)."""
    today = pacific_today()
    last = today - dt.timedelta(days=final_lag_days + 1)
    return [(last - dt.timedelta(days=i)).isoformat() for i in reversed(range(count))]


def write_demo_declaration(workdir: Path, first_day: str) -> Path:
    """The bundled declaration with its partitions starting at the demo's first day.

    The demo fetches the last 30 final days; partitions starting at the bundled start date
    (16 months back) made every asset read "6% filled" in the UI after a complete demo.
    """
    declaration = yaml.safe_load(BUNDLED_DEMO_CONFIG.read_text())
    declaration["attributes"]["start_date"] = first_day
    path = workdir / DEMO_DECLARATION
    path.write_text(yaml.safe_dump(declaration, sort_keys=False))
    return path.resolve()


def demo_env(workdir: Path, endpoint: str) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str((workdir / "dagster_home").resolve()),
        API_ENDPOINT_ENV: endpoint,
        WAREHOUSE_URL_ENV: f"duckdb:///{(workdir / 'warehouse.duckdb').resolve()}",
        CONFIG_ENV: str((workdir / DEMO_DECLARATION).resolve()),
    }


def _print_progress(progress: BackfillProgress) -> None:
    print(
        f"  backfill {progress.status.lower()}: {progress.runs_done}/{progress.runs_total} runs "
        f"finished ({progress.runs_failed} failed)",
        flush=True,
    )


def summarise(config: PipelineConfig, warehouse_url: str) -> list[str]:
    warehouse = open_warehouse(warehouse_url)
    lines = []
    reports = {r.name: r for p in config.properties for r in p.report_objects()}
    for name in sorted(reports):
        report = reports[name]
        df = warehouse.read_sql(
            f"SELECT count(*) AS n, count(DISTINCT date) AS days, coalesce(sum(clicks), 0) AS c, "
            f"count(DISTINCT search_type) AS types FROM {report.table}"
        )
        row = df.iloc[0]
        kind = (
            "custom" if name in config.reports else "hourly" if report.hourly else "built-in"
        )
        lines.append(
            f"  {report.table:<32} {int(row['n']):>10,} rows  {int(row['days']):>4} days  "
            f"{int(row['c']):>10,} clicks  {', '.join(report.search_types)} ({kind})"
        )
    lines += _hourly_lines(warehouse, [r for r in reports.values() if r.hourly])
    if any(p.sitemaps for p in config.properties):
        sitemaps = warehouse.read_sql(
            f"SELECT count(*) AS n, count(DISTINCT site_url) AS sites, "
            f"sum(CASE WHEN is_pending THEN 1 ELSE 0 END) AS pending FROM {SITEMAPS_TABLE}"
        ).iloc[0]
        lines.append(
            f"  {SITEMAPS_TABLE:<32} {int(sitemaps['n']):>10,} sitemaps for "
            f"{int(sitemaps['sites'])} properties ({int(sitemaps['pending'] or 0)} pending)"
        )
    ledger = warehouse.read_sql(
        "SELECT count(*) AS pages, count(DISTINCT site_url) AS sites FROM gsc_fetch_ledger"
    ).iloc[0]
    pages, sites = int(ledger["pages"]), int(ledger["sites"])
    lines.append(f"  gsc_fetch_ledger: {pages:,} API pages for {sites} properties")
    return lines


def _hourly_lines(warehouse: Warehouse, hourly: list[Report]) -> list[str]:
    """Hourly data at a glance: how many hours, the latest one, the busiest hour of day."""
    lines = []
    for report in hourly:
        hours = warehouse.read_sql(
            f"SELECT hour, sum(clicks) AS clicks FROM {report.table} GROUP BY hour"
        )
        if hours.empty:
            continue
        local = hours["hour"].map(lambda h: pd.Timestamp(h).tz_convert(GOOGLE_TIMEZONE))
        by_hour = hours.groupby(local.map(lambda h: h.hour))["clicks"].sum()
        lines.append(
            f"    {report.name}: {len(hours)} hours, latest {local.max():%Y-%m-%d %H:00} "
            f"Pacific; busiest hour of day {int(by_hour.idxmax()):02d}:00 "
            f"({int(by_hour.max()):,} clicks)"
        )
    return lines


def check_summary(instance: dg.DagsterInstance, config: PipelineConfig) -> list[str]:
    """Each in-run check's evaluations over the backfill's runs: how many passed."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )

    from gsc_pipeline.defs.checks import in_run_check_keys
    from gsc_pipeline.defs.keys import fetch_asset_keys

    tally: dict[str, list[int]] = {}
    for check_key in in_run_check_keys(config, fetch_asset_keys(config)):
        history = instance.event_log_storage.get_asset_check_execution_history(check_key, 1000)
        passed, total = tally.setdefault(check_key.name, [0, 0])
        tally[check_key.name] = [
            passed + sum(r.status == Status.SUCCEEDED for r in history),
            total + sum(r.status in (Status.SUCCEEDED, Status.FAILED) for r in history),
        ]
    return [f"  check {name:<26} {p}/{t} evaluations passed" for name, (p, t) in tally.items()]


# Three times Google's row cap (sharded): the demo backfills only its last days, which
# already take ~30 requests each.
BIG_DEMO_SITE = "sc-domain:big.example"
BIG_DEMO_DAYS = 2


def run_demo(workdir: Path, days: int = 30, timeout: float = 1200) -> int:
    with stopped_by_signals():
        return _run_demo(workdir, days, timeout)


def last_run_ended(instance: dg.DagsterInstance, backfill_ids: list[str]) -> float:
    """When the last run of these backfills ended (Unix time)."""
    return max(
        record.end_time or 0.0
        for backfill_id in backfill_ids
        for record in instance.get_run_records(
            filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id})
        )
    )


def _run_demo(workdir: Path, days: int, timeout: float) -> int:
    started, started_at = time.monotonic(), time.time()
    shutil.rmtree(workdir, ignore_errors=True)
    home = (workdir / "dagster_home").resolve()
    home.mkdir(parents=True)
    partition_keys = final_days(days)
    config = load_config(write_demo_declaration(workdir, partition_keys[0]))
    print(f"gsc_pipeline demo: {len(config.properties)} properties x {days} days -> {workdir}/")
    with emulator_process(log=workdir / "emulator.log") as emulator:
        env = demo_env(workdir, emulator.base_url)
        os.environ.update(env)
        limits = init_instance(home, config)
        print(f"  emulator at {emulator.base_url}; pool limits {limits}")
        from gsc_pipeline.defs.keys import fetch_asset_key, fetch_asset_keys, sitemaps_asset_key

        big = [
            fetch_asset_key(config, p, r)
            for p in config.properties
            if p.site_url == BIG_DEMO_SITE
            for r in p.report_objects()
        ]
        # The fetching assets and each property's sitemaps snapshot (unpartitioned: one run).
        asset_keys = [
            *(key for key in fetch_asset_keys(config) if key not in big),
            *(sitemaps_asset_key(config, p) for p in config.properties if p.sitemaps),
        ]
        big_days = partition_keys[-BIG_DEMO_DAYS:]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # Started first: the daemon's start (its code server loading the definitions) runs
            # beside the launch's own load of them, and its next tick picks the backfills up.
            with dagster_daemon(home, workdir / "daemon.log", LOCAL_BACKFILL_TICK_SECONDS):
                backfill_ids = launch_backfills(
                    instance,
                    home / "workspace.yaml",
                    [
                        (keys, span, f"demo: {span[0]}..{span[-1]}")
                        for keys, span in ((asset_keys, partition_keys), (big, big_days))
                        if keys
                    ],
                )
                print(
                    f"  launched backfills {', '.join(backfill_ids)} ({len(asset_keys)} assets x "
                    f"{days} days, {len(big)} of {BIG_DEMO_SITE} x {len(big_days)}); daemon started"
                )
                outcomes = [
                    wait_for_backfill(
                        instance, backfill_id, timeout=timeout, on_progress=_print_progress
                    )
                    for backfill_id in backfill_ids
                ]
            runs_ended = last_run_ended(instance, backfill_ids) - started_at
            progress = next((o for o in outcomes if not o.succeeded), outcomes[0])
            checks = check_summary(instance, config)
        stats = emulator.stats()
    elapsed = time.monotonic() - started
    print(
        f"\nBackfill {progress.status} in {elapsed:.0f} s (its last run ended at "
        f"{runs_ended:.0f} s; this daemon ticks every {LOCAL_BACKFILL_TICK_SECONDS} s, "
        "a production daemon every 30 s)"
    )
    for line in [*summarise(config, env[WAREHOUSE_URL_ENV]), *checks]:
        print(line)
    credential = config.credentials["default"]
    print(
        f"  API: {stats['requests_total']:,} requests, {stats['rows_served']:,} rows served, "
        f"quota rejections {sum(stats['quota_rejections'].values())}\n"
        f"  peak concurrent requests {stats['peak_concurrent_requests']} (cap: pool limit "
        f"{credential.pool_limit} x {credential.step_concurrency} per step); peak "
        f"{max(stats['peak_qpm_by_site'].values(), default=0)} queries/min on one site "
        f"(budget {credential.qpm_budget:.0f})"
    )
    print(f"\nOpen the UI on this instance: make ui   (or: gsc-pipeline ui --workdir {workdir})")
    return 0 if progress.succeeded else 1


def run_ui(workdir: Path, port: int = 3000) -> int:
    """`dg dev` on the demo's instance, the emulator beside it, and a short backfill tick.

    SIGTERM or SIGINT (Ctrl-C) stops all of it: dg dev's process group, then the emulator."""
    with stopped_by_signals():
        return _run_ui(workdir, port)


def _run_ui(workdir: Path, port: int) -> int:
    home = (workdir / "dagster_home").resolve()
    if not (workdir / DEMO_DECLARATION).exists():
        home.mkdir(parents=True, exist_ok=True)
        write_demo_declaration(workdir, final_days(30)[0])
    if not (home / "dagster.yaml").exists():
        init_instance(home, load_config(workdir / DEMO_DECLARATION))
    with emulator_process(log=workdir / "emulator-ui.log") as emulator:
        env = {
            **os.environ,
            **demo_env(workdir, emulator.base_url),
            **short_tick_env(LOCAL_BACKFILL_TICK_SECONDS),
            "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        }
        print(
            f"emulator at {emulator.base_url}; Dagster UI at http://127.0.0.1:{port}/ "
            f"(backfills tick every {LOCAL_BACKFILL_TICK_SECONDS} s here, 30 s in production)"
        )
        cmd = [
            str(Path(sys.executable).with_name("dg")),
            "dev",
            "-w",
            str(home / "workspace.yaml"),
            "-p",
            str(port),
        ]
        # Its own session: Ctrl-C reaches it through stopped_by_signals, as one group.
        dev = subprocess.Popen(cmd, env=env, start_new_session=True)
        try:
            return dev.wait()
        finally:
            _stop_group(dev, timeout=30)
