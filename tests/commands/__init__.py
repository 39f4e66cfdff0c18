"""Tests of collector/commands."""
