-- Buckets of ordered keys (see package kv): one row a key, ordered bytewise
-- within a bucket by the primary key's index.
CREATE TABLE airlock_kv (
	bucket text  NOT NULL,
	key    bytea NOT NULL,
	value  bytea NOT NULL,
	PRIMARY KEY (bucket, key)
);

-- Each bucket's sequence (job and audit numbers).
CREATE TABLE airlock_kv_seq (
	bucket text   PRIMARY KEY,
	value  bigint NOT NULL
);
