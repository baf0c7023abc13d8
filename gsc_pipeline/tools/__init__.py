"""Tooling around the pipeline, not part of it: the demo, the benchmarks, the multi-host proof
and launching backfills the way the UI does. Production code (`definitions`, `defs/` and the
layers below) never imports this package; its dependencies come with the `bench` and `emulator`
extras."""
