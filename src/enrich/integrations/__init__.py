"""Integrations with labeling tools (each behind its optional extra)."""
