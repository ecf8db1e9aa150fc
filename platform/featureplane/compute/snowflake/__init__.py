"""Snowflake: the connector client, the SQL engine and Snowpark."""
