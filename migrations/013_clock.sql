-- A program's test clock: the program's time is real time plus an offset, moved forward only
-- by an admin (README: "Test clocks"). The latest advance's offset is the one in force; the
-- rows are the clock's history, so the program time of any past instant is answerable (a
-- payout that failed before an advance failed at its real time plus the offset then).
CREATE TABLE payouts_clock_advances (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id     text NOT NULL REFERENCES network_programs (id),
    -- by_seconds: this advance; offset_seconds: the program's offset after it.
    by_seconds     bigint NOT NULL,
    offset_seconds bigint NOT NULL,
    advanced_by    text NOT NULL,
    reason         text NOT NULL DEFAULT '',
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_clock_forward CHECK (by_seconds > 0 AND offset_seconds >= by_seconds),
    CONSTRAINT payouts_clock_advanced_by CHECK (advanced_by <> '')
);
CREATE INDEX payouts_clock_advances_program ON payouts_clock_advances (program_id, id);
CREATE TRIGGER payouts_clock_advances_append_only BEFORE UPDATE OR DELETE ON payouts_clock_advances
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_change();

-- Each advance adds to the offset before it: the clock never goes back, nor skips.
CREATE FUNCTION payouts_clock_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('payouts:clock:' || NEW.program_id, 0));
    SELECT offset_seconds INTO prev FROM payouts_clock_advances WHERE program_id = NEW.program_id ORDER BY id DESC LIMIT 1;
    IF NEW.offset_seconds <> coalesce(prev, 0) + NEW.by_seconds THEN
        RAISE EXCEPTION 'the clock of % is % s ahead: an advance of % s makes it %, not %', NEW.program_id,
            coalesce(prev, 0), NEW.by_seconds, coalesce(prev, 0) + NEW.by_seconds, NEW.offset_seconds
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payouts_clock_forward';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payouts_clock_chain BEFORE INSERT ON payouts_clock_advances
    FOR EACH ROW EXECUTE FUNCTION payouts_clock_chain();

-- payouts_clock_offset is a program's offset in force at the real instant at (zero before its
-- first advance, or for a program without a test clock).
CREATE FUNCTION payouts_clock_offset(program text, at timestamptz) RETURNS interval LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT make_interval(secs => offset_seconds) FROM payouts_clock_advances
        WHERE program_id = program AND payouts_clock_advances.at <= payouts_clock_offset.at ORDER BY id DESC LIMIT 1), interval '0');
$$;
