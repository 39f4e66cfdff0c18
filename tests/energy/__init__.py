"""Tests of collector/energy."""
