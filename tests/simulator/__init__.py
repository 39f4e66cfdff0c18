"""Tests of collector/simulator."""
