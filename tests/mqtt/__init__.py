"""Tests of collector/mqtt."""
