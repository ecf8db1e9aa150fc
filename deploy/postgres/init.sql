-- Run once by the postgres image on an empty volume: Dagster's storage gets a database of its own beside
-- featureplane's registry (created by POSTGRES_DB), both owned by the featureplane role.
CREATE DATABASE dagster OWNER featureplane;
