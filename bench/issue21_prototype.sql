-- Issue 21, a scratch experiment (SQL only; nothing here is part of the
-- extension): the changes of the ranked list that SQL alone can try, applied
-- as superuser to an installed withdraw before bench_writes.py counts the
-- writes per withdrawal sent:
--
--   python3 bench/bench_writes.py --withdraw-sql @bench/issue21_prototype.sql
--
-- 1. History written once per batch: the attempt rows a statement inserts are
--    kept aside (no WAL) by a BEFORE row trigger and written
--    as ONE row per statement (ids[], the rows as a jsonb array, which TOAST
--    compresses once a batch passes 2 kB); the two events of each withdrawal
--    sent likewise, one row per UPDATE statement, from the transition tables.
--    (The stash is an unlogged table: what the extension would do in memory.)
--    A DBA would read them through a view unnesting the arrays (not written
--    here).
-- (2. fillfactor 50 and 3. a HOT take, tried here on 0.5.0, are in 0.6.0.)
-- 4. No BEFORE UPDATE row trigger (check_transition): it locks each row it
--    sees, one more LOCK record per outcome.  (The check would move into the
--    statement-level trigger.)
-- Measured on 0.5.0 with 2 and 3 as well: 1,915 bytes per withdrawal sent,
-- against 2,567 for 2 and 3 alone.

CREATE SCHEMA scratch;
CREATE TABLE scratch.history_batch (
    ids bigint[] NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL,
    rows jsonb NOT NULL
);
CREATE INDEX history_batch_ids ON scratch.history_batch USING gin (ids);

-- the stash: unlogged (no WAL), one backend's rows told apart by its pid
-- (the worker runs as a security-restricted operation: no temporary tables)
CREATE UNLOGGED TABLE scratch.attempt_buf (pid integer NOT NULL, LIKE withdraw.attempt);

CREATE FUNCTION scratch.stash_attempt() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO scratch.attempt_buf SELECT pg_backend_pid(), NEW.*;
    RETURN NULL;
END $$;

CREATE FUNCTION scratch.flush_attempts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO scratch.history_batch (ids, kind, rows)
        SELECT array_agg(b.withdrawal_id), 'attempts', jsonb_agg(to_jsonb(b) - 'withdrawal_id' - 'id' - 'pid')
        FROM scratch.attempt_buf b WHERE b.pid = pg_backend_pid() HAVING count(*) > 0;
    DELETE FROM scratch.attempt_buf WHERE pid = pg_backend_pid();
    RETURN NULL;
END $$;

CREATE TRIGGER stash_attempt BEFORE INSERT ON withdraw.attempt
    FOR EACH ROW EXECUTE FUNCTION scratch.stash_attempt();
CREATE TRIGGER flush_attempts AFTER INSERT ON withdraw.attempt
    FOR EACH STATEMENT EXECUTE FUNCTION scratch.flush_attempts();

CREATE FUNCTION scratch.record_transitions() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO scratch.history_batch (ids, kind, rows)
        SELECT array_agg(n.id), 'events',
               jsonb_agg(jsonb_build_object('from', o.state, 'to', n.state, 'provider_status', n.provider_status))
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.state IS DISTINCT FROM o.state HAVING count(*) > 0;
    RETURN NULL;
END $$;
DROP TRIGGER record_transitions ON withdraw.withdrawal;
CREATE TRIGGER record_transitions AFTER UPDATE ON withdraw.withdrawal
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION scratch.record_transitions();

DROP TRIGGER check_transition ON withdraw.withdrawal;
