"""Realtime: the database listener (hub) and the streams that serve its events."""
