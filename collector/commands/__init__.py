"""Subcommands of `irve`: the shell around the pipeline. Each module registers one command."""
