"""Overload protection at the edge: alert rules, load-shedding request, phone notifications."""
