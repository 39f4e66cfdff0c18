"""Subcommands of `irve` (I/O): the shell around the pipeline, one command per module."""
