"""A Search Console Search Analytics API emulator on loopback, for tests, demos and benchmarks.

Start one with `gsc-pipeline emulator` (or `python -m gsc_pipeline.emulator`), or in-process with
`gsc_pipeline.emulator.testing.running_emulator()`. See docs/emulator.md.
"""
