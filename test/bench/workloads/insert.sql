-- single-row INSERT: the key from the table's bigserial, or with
-- BENCH_INSERT_KEY=random (pgbench -D randkey=1) a random bigint key
\set k random(1, 10000)
\if :randkey
\set id random(1, 9000000000000000000)
INSERT INTO ins (id, k, v) VALUES (:id, :k, :client_id);
\else
INSERT INTO ins (k, v) VALUES (:k, :client_id);
\endif
