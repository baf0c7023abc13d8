"""The fetching assets: one per (property, report), generated from the config and report table,
fetched one step per property.

A property's report assets are one subsettable multi_asset, so a run fetching several of its
reports runs one step, which fetches every selected report at once (a thread each), sharing the
credential's API client and one in-flight budget: a 1-day backfill of a property waits for its
slowest report, not for the sum of them, and pays one step's start. Every report keeps its own
asset key, partitions, checks and per-day materializations. Every step sits in its credential's
pool, so Dagster's pool is the worker pool: at most `pool_limit` steps fetch at once, all drawing
from the credential's one quota budget. Backfills batch `backfill_days_per_run` days per run,
because a run costs seconds of CPU to start.
"""

import dataclasses
import functools
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

import dagster as dg

from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.constants import GOOGLE_TIMEZONE
from gsc_pipeline.defs.checks import fetch_check_specs, in_run_check_results, planned_check_days
from gsc_pipeline.defs.errors import UserFacingError, input_errors_without_trace
from gsc_pipeline.defs.keys import sitemaps_asset_key
from gsc_pipeline.defs.names import DATA_STATE_TAG, SITEMAPS_CRON
from gsc_pipeline.defs.partitions import daily_partitions, partition_days
from gsc_pipeline.defs.resources import gsc_resource_key, warehouse_resource_key
from gsc_pipeline.defs.translator import (
    GSC_KINDS,
    GscAssetProps,
    declaration_key,
    fetch_asset_spec,
    table_metadata,
    warehouse_kind,
)
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import Report
from gsc_pipeline.sitemaps import SITEMAPS_TABLE, snapshot_sitemaps
from gsc_pipeline.sync import PartitionResult, aggregation_rejected, sync_days
from gsc_pipeline.sync.committed import committed_days
from gsc_pipeline.sync.fetch import Probes
from gsc_pipeline.sync.shared import SharedInFlight
from gsc_pipeline.warehouse import Warehouse


@dataclasses.dataclass(frozen=True)
class FetchStep:
    """What the reports fetched in one property's step share: the credential's API client (its
    budget), the days in flight (one Little's law for the whole step), the stop (a Terminate
    stops every report at its next API call) and a lock around the step context's metadata,
    which Dagster keeps in an accumulator that is not safe to update from two threads."""

    client: GscClient
    in_flight: SharedInFlight
    stop_event: threading.Event
    # The reports' finality probe: the same request for every report of the step, sent once.
    probes: Probes = dataclasses.field(default_factory=Probes)
    context_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _committed(
    context: dg.AssetExecutionContext, warehouse: Warehouse, site_url: str, report: Report
) -> dict[str, dict[str, object]]:
    """The days this run committed, by the ledger; none when it cannot be read (the step's own
    error, raised next, says more)."""
    try:
        return committed_days(warehouse, site_url, report, context.run_id)
    except Exception as exc:  # noqa: BLE001 - the step's own error is the one to raise
        context.log.warning(f"cannot read the days this run committed ({exc})")
        return {}


# What a fetching asset runs: (context, what the asset is) -> its materialization and checks.
# `GscComponent.execute` is one; a subclass of the component overrides it instead of a fork.
# In a run it is called once per selected report, in the report's own thread of the step.
FetchResult = dg.MaterializeResult | dg.AssetCheckResult | dg.AssetCheckEvaluation
FetchExecute = Callable[[dg.AssetExecutionContext, GscAssetProps], Iterator[FetchResult]]


def _step_of(context: dg.AssetExecutionContext, props: GscAssetProps) -> FetchStep:
    """A step's shared client and in-flight budget, for the reports of `props.prop`.

    Made before the warehouse is opened: a bad key or endpoint fails here, leaving the
    warehouse as it was. Retry waits (quota, transient faults) show in the run's log, saying
    what they wait for.
    """
    gsc = getattr(context.resources, gsc_resource_key(props.config, props.prop.credential))
    stop_event = threading.Event()
    client = gsc.client(stop_event, log=context.log.warning)
    in_flight = SharedInFlight(client.limiter.qpm, gsc.step_concurrency, gsc.step_memory_mb << 20)
    return FetchStep(client, in_flight, stop_event)


def fetch_partitions(
    context: dg.AssetExecutionContext, props: GscAssetProps
) -> Iterator[FetchResult]:
    """Fetch the run's days of one (property, report) into the warehouse, then prove them.

    Each day's materialization carries Dagster's table metadata: its row count, the table's
    fully qualified name and its column schema as the warehouse stores it. Called in a step
    (`props.step` set), it shares the step's client and in-flight budget with the property's
    other reports; called alone, it makes its own.
    """
    config, prop, report = props.config, props.prop, props.report
    asset_key = fetch_asset_spec(config, prop, report).key
    step = props.step or _step_of(context, props)
    days = partition_days(context)
    warehouse = getattr(context.resources, warehouse_resource_key(config)).open()
    # The report's table exists once its first day is written: read its description then, once.
    table = functools.cache(lambda: warehouse.describe_table(report.table))
    written: dict[str, dict[str, object]] = {}
    # At most four progress lines per report, one at each quarter of its days: every line is
    # an event-log write (a transaction on the SQLite instance), and the per-day numbers are
    # in the materialization metadata anyway.
    progress_every = max(1, -(-len(days) // 4))

    def on_partition(result: PartitionResult) -> None:
        metadata = {
            **result.metadata(),
            **table_metadata(table(), result.rows),
        }
        written[result.day.isoformat()] = metadata
        with step.context_lock:
            context.add_asset_metadata(
                metadata, asset_key=asset_key, partition_key=result.day.isoformat()
            )
        done = len(written)
        if done % progress_every == 0 or done == len(days):
            context.log.info(
                f"{prop.site_url} {report.name}: {done}/{len(days)} days written "
                f"(last {result.day}: {result.rows:,} rows in {result.pages} page(s))"
            )

    try:
        with step.in_flight.share(step.stop_event) as in_flight:
            sync_days(
                step.client,
                warehouse,
                prop.site_url,
                report,
                days,
                run_id=context.run_id,
                data_state=context.run.tags.get(DATA_STATE_TAG, "final"),
                stop_event=step.stop_event,
                on_partition=on_partition,
                in_flight=in_flight,
                probes=step.probes,
                on_plan=context.log.info,
            )
    except BaseException as exc:
        # Dagster records no materialization for a report that fails (or is terminated), yet
        # the days written before it are complete: record them, so the repair sensor and
        # the UI see exactly which days are still missing. The ledger says which: a day
        # committed at the moment of a Terminate (before its callback ran) is there too.
        committed = _committed(context, warehouse, prop.site_url, report)
        for day, metadata in sorted((committed | written).items()):
            context.log_event(dg.AssetMaterialization(asset_key, partition=day, metadata=metadata))
        restated = aggregation_rejected(exc, prop.site_url, report)
        if restated is not exc:
            raise restated from exc
        raise
    finally:
        if props.step is None:
            # A terminated run raises here from the wait; no new API call may start after it.
            step.stop_event.set()
    # Every table of the property: in-run checks compare reports (site totals vs page x query).
    warehouse.ensure_schema(prop.report_objects())
    # Prove this run's days complete and exact before calling it done.
    yield dg.MaterializeResult(asset_key=asset_key)
    yield from in_run_check_results(
        warehouse, asset_key, prop, report, days, planned_check_days(context.run), context.log
    )


@dataclasses.dataclass(frozen=True)
class _Finished:
    """A report's thread ended: with `error`, or None when its execute ran to its end."""

    props: GscAssetProps
    error: BaseException | None


def fetch_property(
    context: dg.AssetExecutionContext,
    selected: Sequence[GscAssetProps],
    execute: FetchExecute = fetch_partitions,
) -> Iterator[FetchResult]:
    """One step of a property: `execute` for every selected report at once, a thread each.

    What each yields is passed on as it comes (a report's materialization and checks do not
    wait for the others). A failing report does not stop the others: they run to their end
    and are recorded, then the step fails with the first error (the others are in the log and
    in its message).
    A Terminate, raised in this thread, stops every report at its next API call; each records
    the days it committed before the step ends.
    """
    site_url = selected[0].prop.site_url
    step = _step_of(context, selected[0])
    results: queue.SimpleQueue[FetchResult | _Finished] = queue.SimpleQueue()

    def run(props: GscAssetProps) -> None:
        @input_errors_without_trace(f"{site_url} {props.report.name}")
        def report_results() -> Iterator[FetchResult]:
            yield from execute(context, dataclasses.replace(props, step=step))

        try:
            for result in report_results():
                results.put(result)
        except BaseException as exc:  # noqa: BLE001 - handed to the step's thread, raised there
            results.put(_Finished(props, exc))
        else:
            results.put(_Finished(props, None))

    threads = [
        threading.Thread(target=run, args=(props,), name=f"gsc-{props.report.name}", daemon=True)
        for props in selected
    ]
    failed: list[_Finished] = []
    try:
        for thread in threads:
            thread.start()
        running = len(threads)
        while running:
            item = results.get()
            if isinstance(item, _Finished):
                running -= 1
                if item.error is not None:
                    failed.append(item)
            else:
                yield item
    finally:
        # Normally every report is done; after a Terminate (or any error here) this stops the
        # others at their next API call and waits while they record what they committed.
        step.stop_event.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
    if failed:
        # The step fails with the first report's error, naming the others too: input errors
        # are shown as their message alone (one message for all), any other error with notes.
        first, others = failed[0].error, failed[1:]
        too = [f"{site_url} {o.props.report.name} failed too: {o.error}" for o in others]
        for line in too:
            context.log.error(line)
        if others and all(isinstance(f.error, UserFacingError) for f in failed):
            raise UserFacingError("\n".join(str(f.error) for f in failed)) from first
        for line in too:
            first.add_note(line)
        raise first


def _op_name(config: PipelineConfig, prop: PropertyConfig) -> str:
    return "__".join(declaration_key(config, "gsc", prop.key).path)


def build_fetch_asset(
    prop: PropertyConfig,
    config: PipelineConfig,
    execute: FetchExecute = fetch_partitions,
) -> dg.AssetsDefinition:
    """The property's report assets, fetched by one step (see the module docstring)."""
    props_by_key = {
        fetch_asset_spec(config, prop, report).key: GscAssetProps(config, prop, report)
        for report in prop.report_objects()
    }
    specs = [fetch_asset_spec(config, p.prop, p.report) for p in props_by_key.values()]

    # Subsettable: a run may fetch any of the property's reports. Its check outputs are then
    # optional too, so a check that measured nothing yields no result (Dagster shows it
    # skipped); a non-subsettable asset fails the step when a selected check yields none.
    @dg.multi_asset(
        name=_op_name(config, prop),
        specs=specs,
        partitions_def=daily_partitions(config),
        backfill_policy=dg.BackfillPolicy.multi_run(config.backfill_days_per_run),
        pool=config.pools[prop.credential],
        required_resource_keys={
            gsc_resource_key(config, prop.credential),
            warehouse_resource_key(config),
        },
        check_specs=[
            check
            for key, props in props_by_key.items()
            for check in fetch_check_specs(key, prop, props.report)
        ],
        can_subset=True,
    )
    @input_errors_without_trace(prop.site_url)
    def fetch(context: dg.AssetExecutionContext) -> Iterator[FetchResult]:
        selected = [p for key, p in props_by_key.items() if key in context.selected_asset_keys]
        yield from fetch_property(context, selected, execute)

    return fetch


def build_sitemaps_asset(
    config: PipelineConfig, prop: PropertyConfig, tags: dict[str, str]
) -> dg.AssetsDefinition:
    """The property's submitted sitemaps, snapshotted daily: indexing context beside traffic.

    Unpartitioned (sitemaps.list has no dates) and in the credential's pool like every API
    caller; the automation sensor (which targets `tags`) materializes it each morning.
    """
    gsc_key = gsc_resource_key(config, prop.credential)
    warehouse_key = warehouse_resource_key(config)

    @dg.asset(
        key=sitemaps_asset_key(config, prop),
        group_name=config.namespaced(prop.key),
        description=(
            f"Sitemaps submitted for {prop.site_url} (sitemaps.list): path, type, last "
            f"submitted/downloaded, pending, warnings, errors, contents. Table {SITEMAPS_TABLE}."
        ),
        pool=config.pools[prop.credential],
        required_resource_keys={gsc_key, warehouse_key},
        kinds={*GSC_KINDS, warehouse_kind()},
        owners=list(config.owners),
        tags=tags,
        automation_condition=dg.AutomationCondition.on_cron(SITEMAPS_CRON, GOOGLE_TIMEZONE),
        metadata={"site_url": prop.site_url, "table": SITEMAPS_TABLE},
    )
    def sitemaps(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        client = getattr(context.resources, gsc_key).client()
        warehouse = getattr(context.resources, warehouse_key).open()
        rows = snapshot_sitemaps(client, warehouse, prop.site_url)
        pending = sum(rows.column("is_pending").to_pylist())
        return dg.MaterializeResult(
            metadata={
                **table_metadata(warehouse.describe_table(SITEMAPS_TABLE), rows.num_rows),
                "pending_sitemaps": pending,
                "errors": sum(rows.column("errors").to_pylist()),
                "warnings": sum(rows.column("warnings").to_pylist()),
                "urls_submitted": sum(rows.column("urls_submitted").to_pylist()),
            }
        )

    return sitemaps


def build_sitemaps_assets(
    config: PipelineConfig, tags: dict[str, str]
) -> list[dg.AssetsDefinition]:
    return [build_sitemaps_asset(config, prop, tags) for prop in config.properties if prop.sitemaps]


def build_fetch_assets(
    config: PipelineConfig, execute: FetchExecute = fetch_partitions
) -> list[dg.AssetsDefinition]:
    """One multi_asset per property, holding an asset per report."""
    return [build_fetch_asset(prop, config, execute) for prop in config.properties]
