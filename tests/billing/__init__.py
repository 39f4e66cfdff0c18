"""Tests of collector/billing."""
