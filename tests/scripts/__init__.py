"""Tests of the scripts (scripts/)."""
