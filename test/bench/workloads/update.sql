-- single-row UPDATE by primary key on the 10,000-row table t
\set id random(1, 10000)
UPDATE t SET v = v + 1 WHERE id = :id;
