"""`gsc-pipeline emulator` / `python -m gsc_pipeline.emulator`: serve until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import signal
import sys

from pydantic import ValidationError

from gsc_pipeline.emulator.auth import write_key_file
from gsc_pipeline.emulator.config import EmulatorConfigError, Restatement, load_config
from gsc_pipeline.emulator.server import Emulator, start_server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsc-pipeline emulator",
        description="Serve a Search Console API emulator on loopback until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--config", type=pathlib.Path, help="YAML config (default: built-in)")
    parser.add_argument(
        "--write-key",
        type=pathlib.Path,
        metavar="PATH",
        help="write a service-account key file for this emulator (reused if it exists)",
    )
    parser.add_argument("--time-scale", type=float, help="speed up latency and quota windows")
    parser.add_argument("--seed", type=int, help="data seed (overrides the config's)")
    parser.add_argument(
        "--restate",
        action="append",
        default=[],
        metavar="START:END[:FACTOR]",
        help="restate days START..END (YYYY-MM-DD) of every site: impressions times FACTOR "
        "(default 0.8), final days included, as Google's corrections do; repeatable",
    )
    return parser


def _restatement(text: str) -> Restatement:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise EmulatorConfigError(
            f"--restate {text!r}: write START:END or START:END:FACTOR, e.g. "
            "2026-04-01:2026-04-30:0.8"
        )
    try:
        return Restatement(start=parts[0], end=parts[1], factor=parts[2] if parts[2:] else 0.8)
    except ValidationError as exc:
        raise EmulatorConfigError(f"--restate {text!r}: {exc.errors()[0]['msg']}") from None


def _adopt_or_write_key(emulator: Emulator, path: pathlib.Path, base_url: str) -> None:
    """Reuse an existing key file so credentials survive emulator restarts."""
    if path.exists():
        try:
            info = json.loads(path.read_text())
            emulator.authority.trust_private_key(info["private_key_id"], info["private_key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EmulatorConfigError(
                f"--write-key: {path} is not a usable key file: {exc}"
            ) from None
    write_key_file(path, emulator.authority.service_account_info(base_url + "token"))


async def _serve(emulator: Emulator, host: str, port: int, key_path: pathlib.Path | None) -> None:
    # Handlers go in before the URL is printed: whoever reads the line may signal at once.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner, base_url = await start_server(emulator, host, port)
    if key_path is not None:
        _adopt_or_write_key(emulator, key_path, base_url)
    print(f"GSC emulator listening on {base_url}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, time_scale=args.time_scale, seed=args.seed)
        if args.restate:
            restated = config.switches.restated + tuple(map(_restatement, args.restate))
            config = config.model_copy(
                update={"switches": config.switches.model_copy(update={"restated": restated})}
            )
        emulator = Emulator(config)
        asyncio.run(_serve(emulator, args.host, args.port, args.write_key))
    except (EmulatorConfigError, OSError) as exc:
        print(f"gsc-pipeline emulator: {exc}", file=sys.stderr)
        return 2
    return 0
