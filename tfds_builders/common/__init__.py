"""Shared pieces of the three builders: raw readers, release layouts, reports, scene graphs."""
