"""The names the Dagster wiring gives things, in one place: asset key prefixes, jobs, schedules,
sensors, run tags and crons. Job, schedule, sensor and group names get the declaration's prefix
(`PipelineConfig.namespaced`), asset keys go under it (`translator.declaration_key`). Crons run
on Search Console's clock (`constants.GOOGLE_TIMEZONE`), in this order each morning."""

# Asset key prefixes: `gsc/<property>/<report>` (the daily-partitioned fetching assets), the
# unpartitioned daily snapshots beside them, and each fetching asset's stored days as a whole.
FETCH_KEY_PREFIX = "gsc"
SITEMAPS_KEY_PREFIX = "gsc_sitemaps"
AUDIT_KEY_PREFIX = "gsc_audit"
HISTORY = "history"
STATS_GROUP = "gsc_stats"
# The whole-history twin of each in-run check carries this suffix (same asset, distinct name).
ALL_DAYS_SUFFIX = "_all_days"

# Jobs, schedules, sensors.
FETCH_JOB = "gsc_fetch"
DAILY_REFRESH_SCHEDULE = "daily_refresh_schedule"
HOURLY_REFRESH_SCHEDULE = "hourly_refresh_schedule"
REPAIR_SENSOR = "repair_sensor"
FINALIZATION_SENSOR = "finalization_sensor"
RESTATEMENT_SENSOR = "restatement_sensor"
STATS_AUTOMATION_SENSOR = "url_lifetime_stats_automation"

# Run tags. Dagster's own pair makes one run cover a range of days.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Dagster's tag on every run of a backfill (the bench and tests find a backfill's runs by it).
BACKFILL_TAG = "dagster/backfill"
PROPERTY_TAG = "gsc/property"
# The dataState to fetch: the daily schedule sets "all" when fresh_data is on.
DATA_STATE_TAG = "gsc/data_state"
RESTATED_TAG = "gsc/restated"
REPAIR_ATTEMPT_TAG = "gsc/repair_attempt"
FINALIZE_TAG = "gsc/finalize"
# Marks what the automation sensor evaluates, so the UI shows its target as one readable
# selection (`tag:gsc/automated_by=...`) instead of the repr of a list of check keys.
AUTOMATED_BY_TAG = "gsc/automated_by"
# Which host started a run (the multi-host tool).
HOST_TAG = "gsc/host"
# Which round of the multi-host proof a run belongs to (the multi-host tool).
MULTIHOST_ROUND_TAG = "gsc/multihost_round"

# Crons (Pacific). Early morning in Mountain View: yesterday's partition exists and quota is
# quiet.
DAILY_REFRESH_CRON = "0 6 * * *"
# Sitemaps change rarely: one snapshot each morning, after the daily refresh starts.
SITEMAPS_CRON = "15 6 * * *"
# After the daily refresh (06:00) and the sitemaps snapshot (06:15).
AUDIT_CRON = "45 6 * * *"
# Whole-history checks run once a day after the refresh (by the automation sensor), not inside
# fetch runs: each is a full scan, and it would re-flag days a repair is fixing.
ALL_DAYS_CRON = "30 8 * * *"
# Every hour: Google completes hours as the day goes by, and each run is small (one request per
# day and search type for an hour-only report).
HOURLY_REFRESH_CRON = "20 * * * *"
