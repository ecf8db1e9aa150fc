-- The registry: workspaces, the objects applied to each, and the history of every apply.
CREATE TABLE workspaces (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
    live boolean NOT NULL,
    version integer NOT NULL DEFAULT 0 CHECK (version >= 0),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE objects (
    workspace text NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE,
    kind text NOT NULL,
    name text NOT NULL,
    spec jsonb NOT NULL,
    spec_hash text NOT NULL,
    generation integer NOT NULL,
    created_version integer NOT NULL,
    updated_version integer NOT NULL,
    PRIMARY KEY (workspace, kind, name)
);

CREATE TABLE versions (
    workspace text NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE,
    version integer NOT NULL,
    applied_at timestamptz NOT NULL,
    applied_by text NOT NULL,
    summary text NOT NULL,
    changes jsonb NOT NULL,
    PRIMARY KEY (workspace, version)
);

CREATE TABLE object_history (
    workspace text NOT NULL,
    version integer NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    action text NOT NULL,
    spec jsonb,
    FOREIGN KEY (workspace, version) REFERENCES versions (workspace, version) ON DELETE CASCADE
);
CREATE INDEX object_history_by_version ON object_history (workspace, version);
