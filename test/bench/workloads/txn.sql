-- a 5-statement transaction: 3 updates by primary key (in key order, so
-- that concurrent transactions cannot deadlock), 1 insert (key as in
-- insert.sql), 1 select
\set a random(1, 10000)
\set b random(1, 10000)
\set c random(1, 10000)
\set lo least(:a, :b, :c)
\set hi greatest(:a, :b, :c)
\set mid :a + :b + :c - :lo - :hi
\set k random(1, 10000)
\set id random(1, 9000000000000000000)
BEGIN;
UPDATE t SET v = v + 1 WHERE id = :lo;
UPDATE t SET v = v + 1 WHERE id = :mid;
UPDATE t SET v = v + 1 WHERE id = :hi;
\if :randkey
INSERT INTO ins (id, k, v) VALUES (:id, :k, :client_id);
\else
INSERT INTO ins (k, v) VALUES (:k, :client_id);
\endif
SELECT v FROM t WHERE id = :k;
END;
