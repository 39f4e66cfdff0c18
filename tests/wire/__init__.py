"""Tests of collector/wire."""
