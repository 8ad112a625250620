"""Adapters that plug optimem into agent frameworks (each behind its own optional extra)."""
