-- The account server's records: a user's password hash (argon2id) and admin flag, login sessions (token
-- digests only) and the audit log, which is append-only: rows can be added, never changed or removed.
CREATE TABLE user_accounts (
    principal_id text PRIMARY KEY REFERENCES principals (id),
    password_hash text,
    admin boolean NOT NULL DEFAULT false,
    password_changed_at timestamptz
);

CREATE TABLE sessions (
    id text PRIMARY KEY,
    principal_id text NOT NULL REFERENCES principals (id),
    token_hash text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    source_ip text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_principal ON sessions (principal_id);

CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    workspace text NOT NULL DEFAULT '',
    target text NOT NULL DEFAULT '',
    detail text NOT NULL DEFAULT '',
    source_ip text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace, id);
CREATE INDEX audit_log_by_time ON audit_log (at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
