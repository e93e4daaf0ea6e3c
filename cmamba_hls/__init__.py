"""cmamba-hls application layer: the console script, its subcommands, the demo, evaluation
reports and plots. Imports point down: cmamba_hls -> (codegen, model) -> intsim."""
