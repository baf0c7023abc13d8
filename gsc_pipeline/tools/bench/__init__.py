"""`gsc-pipeline bench` (`command.run_bench`; `agency.run_agency` for `--size agency`).

Imports point down: command -> run, report -> scenario, sampler, floor; report reads run's
result types; agency reuses run's and the scenario's pieces."""
