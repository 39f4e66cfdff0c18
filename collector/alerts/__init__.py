"""Overload protection: alert rules, processor, shed request (pure); phone notifications (I/O)."""
