"""Tests of collector/meters."""
