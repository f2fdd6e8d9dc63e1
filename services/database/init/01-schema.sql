-- Applied once, by PostgreSQL's init scripts, when the data volume is empty.
CREATE TABLE documents (
    id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title text NOT NULL,
    body  text NOT NULL,
    tsv   tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || body)) STORED
);
CREATE INDEX documents_tsv ON documents USING gin (tsv);

CREATE TABLE searches (
    id           uuid PRIMARY KEY,
    query        text NOT NULL CHECK (length(query) BETWEEN 1 AND 200),
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'queued', 'done')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    completed_at timestamptz
);
CREATE INDEX searches_unfinished ON searches (created_at) WHERE status <> 'done';

CREATE TABLE search_results (
    search_id   uuid NOT NULL REFERENCES searches (id) ON DELETE CASCADE,
    document_id integer NOT NULL REFERENCES documents (id),
    rank        real NOT NULL,
    position    integer NOT NULL,
    PRIMARY KEY (search_id, document_id)
);
