-- +goose Up
-- One row per final job, keyed by its id (a UUIDv7: ids sort by creation
-- time, and uuid compares as the id's text does). record is the job as the
-- API answers it (attempts, history and webhook state included), kept as
-- json so it comes back byte for byte; the columns beside it are what
-- listings filter on.
CREATE TABLE archived_jobs (
    id          uuid        PRIMARY KEY,
    chain_id    bigint      NOT NULL,
    status      text        NOT NULL,
    api_key     text        NOT NULL DEFAULT '',
    from_addr   text        NOT NULL DEFAULT '', -- lower-case 0x hex: the signer
    to_addr     text        NOT NULL DEFAULT '', -- lower-case 0x hex
    created_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,            -- when it became final
    metadata    jsonb,
    record      json        NOT NULL,
    raw         text        NOT NULL DEFAULT '', -- the signed transaction
    body_hash   text        NOT NULL DEFAULT '', -- for Idempotency-Key replays
    archived_at timestamptz NOT NULL DEFAULT now()
);

-- Listings page by id, newest first, within a chain (and a key, a signer,
-- a status): each index ends in id so a page is one index range scan.
CREATE INDEX archived_jobs_chain ON archived_jobs (chain_id, id);
CREATE INDEX archived_jobs_api_key ON archived_jobs (api_key, chain_id, id);
CREATE INDEX archived_jobs_from ON archived_jobs (from_addr, id);
CREATE INDEX archived_jobs_to ON archived_jobs (to_addr, id);
CREATE INDEX archived_jobs_status ON archived_jobs (status, id);
CREATE INDEX archived_jobs_created_at ON archived_jobs (created_at);
CREATE INDEX archived_jobs_metadata ON archived_jobs USING gin (metadata jsonb_path_ops);

-- +goose Down
DROP TABLE archived_jobs;
