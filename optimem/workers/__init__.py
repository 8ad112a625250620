"""Decode workers: the PostgreSQL queue of pages to read and the worker that drains it."""
