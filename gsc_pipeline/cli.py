"""`gsc-pipeline`: demo | emulator | doctor | init-instance | ui | bench.

Each subcommand imports its module lazily, so `gsc-pipeline emulator` starts without Dagster.
The tooling commands need extras a production install leaves out; without them they say which.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

# What each extra brings that a command imports (pyproject.toml [project.optional-dependencies]).
EXTRA_MODULES = {"bench": ("psutil", "matplotlib"), "emulator": ("aiohttp", "jwt")}
# The extras each tooling command needs: the demo, the UI, the bench and the multi-host proof all
# run the emulator.
COMMAND_EXTRAS = {
    "demo": ("emulator",),
    "ui": ("emulator",),
    "emulator": ("emulator",),
    "bench": ("bench", "emulator"),
    "multihost": ("emulator",),
}


def missing_extras(command: str) -> str | None:
    """What to install before `command` runs, or None when its extras are installed."""
    missing = [
        (extra, module)
        for extra in COMMAND_EXTRAS.get(command, ())
        for module in EXTRA_MODULES[extra]
        if importlib.util.find_spec(module) is None
    ]
    if not missing:
        return None
    extras = list(dict.fromkeys(extra for extra, _ in missing))
    modules = ", ".join(module for _, module in missing)
    return (
        f"gsc-pipeline {command}: {modules} not installed; it needs the "
        f"{' and '.join(extras)} extra{'s' if len(extras) > 1 else ''} (a production install "
        f"leaves them out): pip install 'gsc-pipeline[{','.join(extras)}]'"
    )


def _demo(args: argparse.Namespace) -> int:
    from gsc_pipeline.tools.demo import run_demo

    return run_demo(Path(args.workdir), days=args.days, timeout=args.timeout)


def _ui(args: argparse.Namespace) -> int:
    from gsc_pipeline.tools.demo import run_ui

    return run_ui(Path(args.workdir), port=args.port)


def _doctor(args: argparse.Namespace) -> int:
    from gsc_pipeline.doctor import run_doctor

    return run_doctor(args.config)


def _init_instance(args: argparse.Namespace) -> int:
    import dagster as dg

    from gsc_pipeline.config import ConfigError, load_declarations
    from gsc_pipeline.instance import InstanceConfigConflict, set_pool_limits, write_instance_config

    home = Path(args.dagster_home)
    try:
        declarations = load_declarations(args.config, Path.cwd())
        written = write_instance_config(
            home, postgres=args.postgres, workspace=args.workspace, force=args.force
        )
    except (ConfigError, InstanceConfigConflict) as exc:
        print(f"gsc-pipeline init-instance: {exc}", file=sys.stderr)
        return 1
    print(declarations.origin)
    for line in written:
        print(line)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for config in declarations.configs.values():
            for pool, limit in set_pool_limits(instance, config).items():
                print(f"pool {pool}: limit {limit} (in the instance database)")
    print(f"export DAGSTER_HOME={home}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.size == "agency":
        from gsc_pipeline.tools.bench.agency import run_agency

        return run_agency(Path(args.out))
    from gsc_pipeline.tools.bench.command import run_bench

    keep = Path(args.keep_home) if args.keep_home else None
    return run_bench(size=args.size, warehouse=args.warehouse, out=Path(args.out), keep_home=keep,
                     warm=not args.cold_emulator)


def _multihost(args: argparse.Namespace) -> int:
    from gsc_pipeline.tools.multihost import NetnsUnavailable
    from gsc_pipeline.tools.multihost import main as multihost_main

    try:
        argv = ["--out", args.out]
        for name in ("rounds", "days"):
            if getattr(args, name) is not None:
                argv += [f"--{name}", str(getattr(args, name))]
        return multihost_main(argv)
    except NetnsUnavailable as exc:
        print(f"gsc-pipeline multihost: {exc}; run it as root on Linux with iproute2")
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["emulator"]:
        if missing := missing_extras("emulator"):
            print(missing, file=sys.stderr)
            return 2
        # The emulator owns its flags; it imports nothing of the pipeline.
        from gsc_pipeline.emulator.cli import main as emulator_main

        return emulator_main(argv[1:])

    parser = argparse.ArgumentParser(prog="gsc-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("emulator", help="run the bundled GSC API emulator (see --help of it)")

    demo = sub.add_parser(
        "demo", help="backfill the demo properties from the emulator, then summarise"
    )
    demo.add_argument(
        "--workdir", default=".demo", help="instance + warehouse directory (recreated)"
    )
    demo.add_argument("--days", type=int, default=30, help="days to backfill (default 30)")
    demo.add_argument("--timeout", type=float, default=1200, help="seconds before giving up")
    demo.set_defaults(func=_demo)

    ui = sub.add_parser("ui", help="open the Dagster UI on the demo's instance (with the emulator)")
    ui.add_argument("--workdir", default=".demo")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=_ui)

    doctor = sub.add_parser("doctor", help="check config, credentials, reachability, permissions")
    doctor.add_argument(
        "--config",
        default=None,
        help="config file (default: $GSC_PIPELINE_CONFIG, else every GscComponent of the dg "
        "project around the current directory, else the bundled demo)",
    )
    doctor.set_defaults(func=_doctor)

    init = sub.add_parser(
        "init-instance",
        help="merge the pipeline's settings into dagster.yaml and set the pool limits",
    )
    init.add_argument("dagster_home")
    init.add_argument(
        "--config",
        default=None,
        help="a config or defs.yaml (default: $GSC_PIPELINE_CONFIG, else every GscComponent of "
        "the dg project around the current directory)",
    )
    init.add_argument("--postgres", action="store_true", help="storage in $DAGSTER_POSTGRES_URL")
    init.add_argument(
        "--workspace",
        action="store_true",
        help="also write workspace.yaml loading the bundled code location (gsc_pipeline."
        "definitions); a dg project needs none",
    )
    init.add_argument(
        "--force", action="store_true", help="replace an existing dagster.yaml that differs"
    )
    init.set_defaults(func=_init_instance)

    bench = sub.add_parser("bench", help="benchmark: sequential vs the pipeline vs the lower bound")
    bench.add_argument("--size", choices=["smoke", "standard", "agency", "shards"], default="smoke")
    bench.add_argument("--warehouse", choices=["duckdb", "postgres"], default="duckdb")
    bench.add_argument("--out", default="bench-report")
    bench.add_argument(
        "--keep-home", help="copy the backfill's Dagster home here (scripts/run_timeline.py)"
    )
    bench.add_argument(
        "--cold-emulator", action="store_true",
        help="skip the emulator's warm-up: it builds each report while the pipeline is measured",
    )  # fmt: skip
    bench.set_defaults(func=_bench)

    multihost = sub.add_parser(
        "multihost",
        help="prove one pool and one quota budget across hosts (network namespaces; root, "
        "PostgreSQL)",
    )
    multihost.add_argument("--out", default="bench-report")
    multihost.add_argument(
        "--rounds",
        type=int,
        help="backfills in a row on one setup, each measured on its own (default: CI's 10)",
    )
    multihost.add_argument("--days", type=int, help="days per host and round (default: CI's 3)")
    multihost.set_defaults(func=_multihost)

    args = parser.parse_args(argv)
    # Checked before anything starts: a missing chart library must not end a 10-minute bench.
    if missing := missing_extras(args.command):
        print(missing, file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
