"""Setting up a Dagster instance for gsc_pipeline: dagster.yaml plus explicit pool limits.

A user's existing dagster.yaml is theirs (storage, telemetry, run launcher): the pipeline's
settings are merged into it, section by section, and where a section already says something
else nothing is written unless `force` is given.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import dagster as dg
import yaml

from gsc_pipeline.config import PipelineConfig

_TEMPLATES = Path(__file__).parent
WORKSPACE_YAML = """load_from:
  - python_module:
      module_name: gsc_pipeline.definitions
      location_name: gsc_pipeline
"""
_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][\w-]*):")


class InstanceConfigConflict(ValueError):
    """An existing file says something else than the pipeline's template; nothing was written."""


def _sections(template: str) -> dict[str, str]:
    """Top-level key -> its text, with the comment lines just above it (the file's header
    comment, above the first key, belongs to no section)."""
    sections: dict[str, str] = {}
    pending: list[str] = []
    key = None
    for line in template.splitlines(keepends=True):
        match = _TOP_LEVEL_KEY.match(line)
        if match:
            key = match.group(1)
            sections[key] = ("".join(pending) if sections else "") + line
            pending = []
        elif line.startswith("#") or key is None:
            pending.append(line)
        else:
            sections[key] += "".join(pending) + line
            pending = []
    return sections


def _merged(existing: str, template: str, source: str) -> tuple[str, list[str]]:
    """`existing` with the template's missing sections appended, and the sections both have but
    with different values (conflicts). The user's text is kept byte for byte."""
    theirs = yaml.safe_load(existing) or {}
    if not isinstance(theirs, dict):
        return existing, ["(the file is not a mapping)"]
    ours = yaml.safe_load(template)
    sections = _sections(template)
    conflicts = [key for key in ours if key in theirs and theirs[key] != ours[key]]
    missing = [key for key in ours if key not in theirs]
    if not missing:
        return existing, conflicts
    added = "".join(sections[key] for key in missing)
    separator = "" if existing.endswith("\n") or not existing else "\n"
    return f"{existing}{separator}# Added by gsc-pipeline init-instance ({source}):\n{added}", (
        conflicts
    )


def _diff(path: Path, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path} (yours)",
            tofile=f"{path} (with --force)",
        )
    )


def _write_file(path: Path, content: str, merge_source: str | None, force: bool) -> str:
    """Write `content` to `path` without losing what a user wrote there; what was done."""
    if not path.exists():
        path.write_text(content)
        return f"created {path}"
    existing = path.read_text()
    if force:
        path.write_text(content)
        return f"replaced {path} (--force)" if existing != content else f"unchanged {path}"
    merged, conflicts = (
        _merged(existing, content, merge_source)
        if merge_source
        else (existing, [] if existing == content else ["(its content)"])
    )
    if conflicts:
        raise InstanceConfigConflict(
            f"{path} exists and differs from gsc_pipeline's settings in "
            f"{', '.join(conflicts)}; nothing was written. What --force would write:\n"
            f"{_diff(path, existing, content)}"
            "Keep your file (then set those sections yourself) or rerun with --force to "
            "replace it."
        )
    if merged == existing:
        return f"unchanged {path} (it already has gsc_pipeline's settings)"
    path.write_text(merged)
    return f"merged gsc_pipeline's settings into {path}, keeping yours"


def write_instance_config(
    home: Path, *, postgres: bool = False, workspace: bool = True, force: bool = False
) -> list[str]:
    """Write dagster.yaml (local storage, or PostgreSQL via $DAGSTER_POSTGRES_URL) into `home`,
    merged into an existing one, and workspace.yaml (the bundled code location) if asked.

    Returns a line per file saying what was done. An existing file that says something else is
    left as it was and `InstanceConfigConflict` shows the difference, unless `force`.
    """
    home.mkdir(parents=True, exist_ok=True)
    template = "dagster-postgres.yaml" if postgres else "dagster.yaml"
    done = [
        _write_file(
            home / "dagster.yaml",
            (_TEMPLATES / template).read_text(),
            f"gsc_pipeline/instance/{template}",
            force,
        )
    ]
    if workspace:
        done.append(_write_file(home / "workspace.yaml", WORKSPACE_YAML, None, force))
    return done


def set_pool_limits(
    instance: dg.DagsterInstance, config: PipelineConfig, limit: int | None = None
) -> dict[str, int]:
    """Set each credential's pool limit in the instance DB (what `dagster instance concurrency
    set` does). A pool without a limit is unlimited, so this is part of setup, not optional."""
    limits = {}
    for name, credential in config.credentials.items():
        pool = config.pools[name]
        limits[pool] = limit or credential.pool_limit
        instance.event_log_storage.set_concurrency_slots(pool, limits[pool])
    return limits


def init_instance(
    home: Path,
    config: PipelineConfig,
    *,
    postgres: bool = False,
    pool_limit: int | None = None,
    workspace: bool = True,
) -> dict[str, int]:
    """The tools' setup of their own instance (demo, bench, tests): files, then pool limits.

    Their directories hold nothing of a user's, and a bench step edits the dagster.yaml a later
    step expects fresh: the template replaces it (the CLI merges instead).
    """
    write_instance_config(home, postgres=postgres, workspace=workspace, force=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return set_pool_limits(instance, config, pool_limit)
