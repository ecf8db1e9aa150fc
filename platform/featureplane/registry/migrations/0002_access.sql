-- Access control: principals (service accounts and users), their API keys (hashes only) and the roles
-- they hold on workspaces ('*': every workspace; a binding outlives its workspace, as in SQLite).
CREATE TABLE principals (
    id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('user', 'service_account')),
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    created_by text NOT NULL DEFAULT '',
    disabled_at timestamptz
);

CREATE TABLE api_keys (
    id text PRIMARY KEY,
    principal_id text NOT NULL REFERENCES principals (id),
    key_hash text NOT NULL,
    hash_scheme text NOT NULL DEFAULT 'sha256',
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    created_by text NOT NULL DEFAULT '',
    revoked_at timestamptz,
    revoked_by text
);
CREATE INDEX api_keys_by_principal ON api_keys (principal_id);

CREATE TABLE role_bindings (
    principal_id text NOT NULL REFERENCES principals (id),
    workspace text NOT NULL,
    role text NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL DEFAULT '',
    PRIMARY KEY (principal_id, workspace, role)
);
CREATE INDEX role_bindings_by_workspace ON role_bindings (workspace);
