"""Names and numbers the whole project shares, stated once: Google's limits, the environment
variables, the default pool. Plain values, no imports, so any layer (the CLI, the doctor, the
demo, the bench, the Dagster wiring) can read them without importing another layer."""

# Google's Search Analytics API.
GOOGLE_QPM_QUOTA = 1200  # queries per minute, per site and per user
MAX_ROW_LIMIT = 25_000  # rows per page (rowLimit)
DAILY_ROW_CAP = 50_000  # rows per day per search type (top rows by clicks)
RETENTION_MONTHS = 16  # older days come back empty (or 400)
# Search Console's day is Pacific Time: dates, "today" and the retention window follow it.
GOOGLE_TIMEZONE = "America/Los_Angeles"

# Names users declare that become SQL and Dagster names (report names -> tables gsc_<name>,
# property keys and prefixes -> asset key segments, groups, pools, schemas): one rule for all.
IDENTIFIER_PATTERN = r"[a-z][a-z0-9_]*"

# Environment variables.
CONFIG_ENV = "GSC_PIPELINE_CONFIG"  # the declaration (config file or defs.yaml)
API_ENDPOINT_ENV = "GSC_API_ENDPOINT"  # API root; unset = Google
WAREHOUSE_URL_ENV = "GSC_WAREHOUSE_URL"  # duckdb:///abs/path or postgresql://...
# Search Console's date as YYYY-MM-DD; unset = the current Pacific date. For replays and tests
# against an emulator whose clock is fixed, so the retention window follows the emulator's clock.
TODAY_ENV = "GSC_TODAY"

# Dagster pools: `gsc_api` for the default credential, `gsc_api_<name>` for the others.
DEFAULT_POOL = "gsc_api"
# Concurrent fetching steps per credential unless its config says otherwise.
DEFAULT_POOL_LIMIT = 4
# MB of fetched rows one fetching step holds unless its credential's config says otherwise
# (`step_memory_mb`; measured in docs/bench/README.md, stop 26; 48 -> 40 at stop 39: a fetch
# run's peak RSS 224-229 MB against 228-256, the same rate).
DEFAULT_STEP_MEMORY_MB = 40
