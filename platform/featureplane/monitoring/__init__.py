"""Monitoring: data quality (Great Expectations), profiles, freshness, training/serving drift and alerts.

Everything here works on specs and plain data; the Dagster code location turns it into asset checks,
metadata, sensors and schedules. Great Expectations is imported only where validation runs.
"""
