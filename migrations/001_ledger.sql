-- The double-entry ledger (DESIGN.md §3).
--
-- Every invariant the ledger promises is enforced here, not only in Go, so that no code path
-- (a future package, a psql session, a bug) can break it:
--   * entries and postings are append-only (triggers refuse UPDATE, DELETE and TRUNCATE);
--   * every entry has at least two postings, inserted in one statement, balanced per currency
--     and per phase; amounts are positive and carry no more places than the currency allows;
--   * account balances change only together with the postings that explain them: each posting
--     carries the account's running totals after it, the statement trigger checks the chain and
--     moves the account row to its last link, and a guard refuses direct balance updates;
--   * a no_overdraft account never shows a negative available balance, after any posting;
--   * a pending entry is committed or voided at most once, an entry is reversed at most once,
--     and commits, voids and reversals mirror the entry they resolve.
-- Violations are raised with a constraint name; ledger/errors.go maps names to Go errors.

CREATE TABLE ledger_currencies (
    code     text PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    exponent smallint NOT NULL CHECK (exponent BETWEEN 0 AND 4)
);

-- ISO 4217 minor units for the currencies a program is likely to use; ledger.Currencies in Go
-- holds the same list and a test keeps the two equal.
INSERT INTO ledger_currencies (code, exponent) VALUES
    ('AED', 2), ('ARS', 2), ('AUD', 2), ('BHD', 3), ('BRL', 2), ('CAD', 2), ('CHF', 2),
    ('CLF', 4), ('CLP', 0), ('CNY', 2), ('COP', 2), ('CZK', 2), ('DKK', 2), ('EGP', 2),
    ('EUR', 2), ('GBP', 2), ('GHS', 2), ('HKD', 2), ('HUF', 2), ('IDR', 2), ('ILS', 2),
    ('INR', 2), ('IQD', 3), ('ISK', 0), ('JOD', 3), ('JPY', 0), ('KES', 2), ('KRW', 0),
    ('KWD', 3), ('LYD', 3), ('MXN', 2), ('NGN', 2), ('NOK', 2), ('NZD', 2), ('OMR', 3),
    ('PEN', 2), ('PHP', 2), ('PLN', 2), ('RON', 2), ('SEK', 2), ('SGD', 2), ('THB', 2),
    ('TND', 3), ('TRY', 2), ('TWD', 2), ('UGX', 0), ('USD', 2), ('VND', 0), ('XAF', 0),
    ('XOF', 0), ('ZAR', 2);

CREATE TABLE ledger_accounts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL,
    type            text NOT NULL,
    currency        text NOT NULL REFERENCES ledger_currencies (code),
    no_overdraft    boolean NOT NULL DEFAULT false,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at       timestamptz,
    -- Current balances. Only the postings trigger may change them (see ledger_accounts_guard).
    posted_debits   numeric NOT NULL DEFAULT 0,
    posted_credits  numeric NOT NULL DEFAULT 0,
    pending_debits  numeric NOT NULL DEFAULT 0,
    pending_credits numeric NOT NULL DEFAULT 0,
    version         bigint NOT NULL DEFAULT 0, -- postings applied so far
    last_seq        bigint NOT NULL DEFAULT 0, -- seq of the last entry that touched the account
    last_posted_at  timestamptz,               -- its posting time: the next may not be earlier
    CONSTRAINT ledger_accounts_code_key UNIQUE (code),
    CONSTRAINT ledger_accounts_code_format CHECK (
        length(code) <= 200 AND code ~ '^[A-Za-z0-9_.:-]+(/[A-Za-z0-9_.:-]+)*$'),
    CONSTRAINT ledger_accounts_type CHECK (
        type IN ('asset', 'liability', 'equity', 'revenue', 'expense')),
    CONSTRAINT ledger_accounts_metadata CHECK (
        jsonb_typeof(metadata) = 'object' AND octet_length(metadata::text) <= 16384),
    CONSTRAINT ledger_accounts_totals_nonnegative CHECK (
        posted_debits >= 0 AND posted_credits >= 0 AND pending_debits >= 0 AND pending_credits >= 0),
    -- Available balance on the account's normal side: posted, less holds moving money out.
    CONSTRAINT ledger_accounts_no_overdraft CHECK (NOT no_overdraft OR (
        CASE WHEN type IN ('asset', 'expense')
             THEN posted_debits - posted_credits - pending_credits
             ELSE posted_credits - posted_debits - pending_debits END) >= 0),
    CONSTRAINT ledger_accounts_closed_empty CHECK (closed_at IS NULL OR (
        posted_debits = posted_credits AND pending_debits = 0 AND pending_credits = 0))
-- Balance updates change no indexed column: free space on each page lets them be HOT updates
-- (no new index entries), which is most of the cost of moving a busy account.
) WITH (fillfactor = 50);

-- Entry sequence numbers are taken after the entry's account locks are held (ledger_post), so
-- entries that share an account are numbered in the order they changed it. CACHE 1 keeps the
-- numbers globally increasing across sessions.
CREATE SEQUENCE ledger_entry_seq AS bigint CACHE 1;

CREATE TABLE ledger_entries (
    id              uuid PRIMARY KEY,
    seq             bigint NOT NULL,
    kind            text NOT NULL,
    idempotency_key text,
    request_hash    bytea,
    description     text NOT NULL DEFAULT '',
    effective_at    timestamptz NOT NULL,
    posted_at       timestamptz NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    -- For commit and void: the pending entry resolved. For reversal: the entry reversed.
    -- Checked by ledger_postings_apply (the target exists and has the right kind) rather than
    -- by a foreign key, whose trigger would fire once per inserted entry; entries are never
    -- deleted, so the target stays.
    target_id       uuid,
    posting_count   integer NOT NULL,
    -- The inserting transaction, so a sealer can tell which sequence numbers are final.
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT ledger_entries_seq_key UNIQUE (seq),
    CONSTRAINT ledger_entries_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT ledger_entries_kind CHECK (
        kind IN ('standard', 'pending', 'commit', 'void', 'reversal')),
    CONSTRAINT ledger_entries_target CHECK (
        (kind IN ('commit', 'void', 'reversal')) = (target_id IS NOT NULL)),
    CONSTRAINT ledger_entries_idempotency_key_format CHECK (
        idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255),
    CONSTRAINT ledger_entries_description CHECK (length(description) <= 1000),
    CONSTRAINT ledger_entries_metadata CHECK (
        jsonb_typeof(metadata) = 'object' AND octet_length(metadata::text) <= 16384),
    CONSTRAINT ledger_entries_posting_count CHECK (posting_count BETWEEN 2 AND 1000
        -- a commit repeats every hold as a release: it must fit too
        AND (kind <> 'pending' OR posting_count <= 500))
);

-- A pending entry is resolved (committed or voided) at most once; an entry is reversed at most once.
CREATE UNIQUE INDEX ledger_entries_resolves_once ON ledger_entries (target_id)
    WHERE kind IN ('commit', 'void');
CREATE UNIQUE INDEX ledger_entries_reverses_once ON ledger_entries (target_id)
    WHERE kind = 'reversal';

-- A posting is one line of an entry. phase says which balance it moves:
--   posted  — posted debits/credits (standard, commit and reversal entries);
--   hold    — adds to pending debits/credits (pending entries);
--   release — takes a hold back out of pending (commit and void entries, mirroring the holds).
-- The running totals are the account's balances after this posting, so a balance as of any
-- sequence number or time is one index lookup, and a statement needs no summing.
CREATE TABLE ledger_postings (
    -- entry_id and account_id are checked by ledger_postings_apply, set-based, rather than by
    -- foreign keys, which would cost a lookup per row on top of the trigger's.
    entry_id        uuid NOT NULL,
    line            smallint NOT NULL,
    account_id      bigint NOT NULL,
    phase           text NOT NULL,
    side            text NOT NULL,
    amount          numeric NOT NULL,
    currency        text NOT NULL,
    seq             bigint NOT NULL,
    posted_at       timestamptz NOT NULL,
    account_version bigint NOT NULL,
    posted_debits   numeric NOT NULL,
    posted_credits  numeric NOT NULL,
    pending_debits  numeric NOT NULL,
    pending_credits numeric NOT NULL,
    CONSTRAINT ledger_postings_pkey PRIMARY KEY (entry_id, line),
    CONSTRAINT ledger_postings_phase CHECK (phase IN ('posted', 'hold', 'release')),
    CONSTRAINT ledger_postings_side CHECK (side IN ('debit', 'credit')),
    CONSTRAINT ledger_postings_amount CHECK (amount > 0 AND amount < 1e15)
);
-- An account's history in order (statements, balance as of a sequence number), and by time.
-- account_version follows seq within an account, and the trigger keeps it gapless and unique.
CREATE INDEX ledger_postings_account_seq ON ledger_postings (account_id, seq, account_version);
CREATE INDEX ledger_postings_account_posted_at ON ledger_postings (account_id, posted_at, account_version);

-- Append-only: entries and postings are never changed or removed.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_append_only',
              HINT = 'correct a posted entry with a reversal';
END $$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Currencies are reference data: a changed exponent would make posted amounts invalid.
CREATE TRIGGER ledger_currencies_append_only BEFORE UPDATE OR DELETE ON ledger_currencies
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_currencies_no_truncate BEFORE TRUNCATE ON ledger_currencies
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- A new account starts empty and open: its balances come only from postings.
CREATE FUNCTION ledger_accounts_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT n.code INTO bad FROM new_accounts n
     WHERE n.posted_debits <> 0 OR n.posted_credits <> 0 OR n.pending_debits <> 0
        OR n.pending_credits <> 0 OR n.version <> 0 OR n.last_seq <> 0 OR n.closed_at IS NOT NULL
        OR n.last_posted_at IS NOT NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'account %: a new account starts open with zero balances', bad
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_accounts_immutable';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_accounts_created AFTER INSERT ON ledger_accounts
    REFERENCING NEW TABLE AS new_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_accounts_created();

-- Every UPDATE of accounts, however it is issued (directly, or from any trigger at any depth):
-- code, type, currency, no_overdraft and creation time are fixed; a closed account stays
-- closed; and the balances are always the last link of the account's posting chain — the
-- running totals stored on its latest posting — so they can change only by adding postings.
-- Set-based, so the postings trigger's one UPDATE per batch costs one check.
CREATE FUNCTION ledger_accounts_verify() RETURNS trigger LANGUAGE plpgsql
    SET jit = off SET enable_seqscan = off AS $$
DECLARE
    bad record;
BEGIN
    -- Set differences, which hash: a join of two transition tables may be planned as a
    -- nested loop, quadratic in the rows updated.
    SELECT x.id, false AS closed INTO bad FROM (
        SELECT o.id, o.code, o.type, o.currency, o.no_overdraft, o.created_at FROM old_accounts o
        EXCEPT
        SELECT n.id, n.code, n.type, n.currency, n.no_overdraft, n.created_at FROM new_accounts n) x
    UNION ALL
    SELECT y.id, true FROM (
        SELECT o.id, o.closed_at FROM old_accounts o WHERE o.closed_at IS NOT NULL
        EXCEPT
        SELECT n.id, n.closed_at FROM new_accounts n WHERE n.closed_at IS NOT NULL) y
    LIMIT 1;
    IF FOUND THEN
        IF NOT bad.closed THEN
            RAISE EXCEPTION 'account id %: code, type, currency, no_overdraft and created_at cannot change', bad.id
                USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_accounts_immutable';
        END IF;
        RAISE EXCEPTION 'account id % is closed', bad.id
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_account_closed';
    END IF;

    SELECT n.code INTO bad
      FROM new_accounts n
      LEFT JOIN LATERAL (
          SELECT p.account_version, p.seq, p.posted_at, p.posted_debits, p.posted_credits, p.pending_debits, p.pending_credits
            FROM ledger_postings p WHERE p.account_id = n.id
           ORDER BY p.seq DESC, p.account_version DESC LIMIT 1) p ON true
     WHERE (n.version, n.last_seq, n.last_posted_at, n.posted_debits, n.posted_credits, n.pending_debits, n.pending_credits)
           IS DISTINCT FROM
           (coalesce(p.account_version, 0), coalesce(p.seq, 0), p.posted_at, coalesce(p.posted_debits, 0),
            coalesce(p.posted_credits, 0), coalesce(p.pending_debits, 0), coalesce(p.pending_credits, 0))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'account %: balances change only through postings', bad.code
            USING ERRCODE = 'restrict_violation', CONSTRAINT = 'ledger_accounts_immutable';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_accounts_verify AFTER UPDATE ON ledger_accounts
    REFERENCING OLD TABLE AS old_accounts NEW TABLE AS new_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_accounts_verify();

-- Raised from ledger_post when a posting names an account that does not exist.
CREATE FUNCTION ledger_unknown_account(p_code text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'unknown account %', p_code
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_account_unknown',
              DETAIL = p_code;
END $$;

-- Checks every statement's new postings as a set and moves the account balances. Set-based so
-- that a batch of thousands of entries costs a few queries, not a few per posting.
-- The posting functions and triggers run with JIT off: their statements are planned for
-- transition tables and arrays of unknown size, the estimates cross jit_above_cost, and
-- compiling costs ~100 ms per call, more than the work itself. The triggers also run with
-- enable_seqscan off: they look up a few rows per new posting by primary key, and statistics
-- skewed by large entries (few distinct entry ids) once made the planner scan all postings
-- once per new entry.
CREATE FUNCTION ledger_postings_apply() RETURNS trigger LANGUAGE plpgsql
    SET jit = off SET enable_seqscan = off SET enable_nestloop = off AS $$
DECLARE
    bad record;
    v_has_targets boolean;
BEGIN
    -- Lock the accounts in id order (ledger_post has normally done so already; this keeps any
    -- other writer deadlock-free and serialised too).
    -- Per posting: account open, currency and precision, and the running-total chain. The
    -- accounts are locked (in id order) and read in one pass, then joined by hash.
    WITH locked AS MATERIALIZED (
        SELECT a.* FROM ledger_accounts a
         WHERE a.id = ANY (ARRAY(SELECT DISTINCT account_id FROM new_postings))
         ORDER BY a.id FOR NO KEY UPDATE
    )
    SELECT v.* INTO bad FROM (
        SELECT n.entry_id, n.line, n.account_id, a.id IS NULL AS missing, a.code, a.closed_at, n.currency, a.currency AS account_currency,
               n.amount, c.exponent, a.no_overdraft, a.type,
               n.account_version <> a.version + row_number() OVER w AS bad_version,
               (n.posted_debits, n.posted_credits, n.pending_debits, n.pending_credits) IS DISTINCT FROM (
                   a.posted_debits + sum(CASE WHEN n.phase = 'posted' AND n.side = 'debit' THEN n.amount ELSE 0 END) OVER w,
                   a.posted_credits + sum(CASE WHEN n.phase = 'posted' AND n.side = 'credit' THEN n.amount ELSE 0 END) OVER w,
                   a.pending_debits + sum(CASE WHEN n.side = 'debit' THEN
                       CASE n.phase WHEN 'hold' THEN n.amount WHEN 'release' THEN -n.amount ELSE 0 END ELSE 0 END) OVER w,
                   a.pending_credits + sum(CASE WHEN n.side = 'credit' THEN
                       CASE n.phase WHEN 'hold' THEN n.amount WHEN 'release' THEN -n.amount ELSE 0 END ELSE 0 END) OVER w
               ) AS bad_totals,
               CASE WHEN a.type IN ('asset', 'expense')
                    THEN n.posted_debits - n.posted_credits - n.pending_credits
                    ELSE n.posted_credits - n.posted_debits - n.pending_debits END AS available,
               n.pending_debits < 0 OR n.pending_credits < 0 AS bad_pending,
               -- Posting times never go back on an account, so a balance as of a time is the
               -- last posting at or before it (even if the database clock steps back).
               n.posted_at < a.last_posted_at AS bad_time,
               -- An entry is atomic: an account's available balance must hold after the entry's
               -- last posting on it, whatever the order of its lines.
               lead(n.entry_id) OVER w IS DISTINCT FROM n.entry_id AS entry_last
          FROM new_postings n
          -- Joins of transition tables are hash or merge joins (enable_nestloop is off here:
          -- the planner cannot see how many rows a transition table holds and would otherwise
          -- loop over one for each row of the other); LATERAL … OFFSET 0 is one index lookup
          -- a row where an index lookup is what is wanted.
          LEFT JOIN locked a ON a.id = n.account_id
          LEFT JOIN LATERAL (SELECT c.exponent FROM ledger_currencies c WHERE c.code = a.currency OFFSET 0) c ON true
        WINDOW w AS (PARTITION BY n.account_id ORDER BY n.account_version ROWS UNBOUNDED PRECEDING)
    ) v
    WHERE v.missing OR v.closed_at IS NOT NULL OR v.currency <> v.account_currency
       OR v.amount <> round(v.amount, v.exponent) OR v.bad_version OR v.bad_totals OR v.bad_pending OR v.bad_time
       OR (v.no_overdraft AND v.entry_last AND v.available < 0)
    LIMIT 1;
    IF FOUND THEN
        IF bad.missing THEN
            RAISE EXCEPTION 'posting %/% names account id %, which does not exist', bad.entry_id, bad.line, bad.account_id
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_account_unknown';
        ELSIF bad.closed_at IS NOT NULL THEN
            RAISE EXCEPTION 'account % is closed', bad.code
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_account_closed', DETAIL = bad.code;
        ELSIF bad.currency <> bad.account_currency THEN
            RAISE EXCEPTION 'posting in % to account % held in %', bad.currency, bad.code, bad.account_currency
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_currency', DETAIL = bad.code;
        ELSIF bad.amount <> round(bad.amount, bad.exponent) THEN
            RAISE EXCEPTION 'amount % has more than % decimal places for %', bad.amount, bad.exponent, bad.currency
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_precision', DETAIL = bad.code;
        ELSIF bad.bad_time THEN
            RAISE EXCEPTION 'posting %/% is dated before the last posting on account %', bad.entry_id, bad.line, bad.code
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_time', DETAIL = bad.code;
        ELSIF bad.bad_version OR bad.bad_totals OR bad.bad_pending THEN
            RAISE EXCEPTION 'posting %/% does not continue the running balance of account %', bad.entry_id, bad.line, bad.code
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_chain', DETAIL = bad.code;
        ELSE
            RAISE EXCEPTION 'account % would be overdrawn (available %)', bad.code, round(bad.available, bad.exponent)
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_accounts_no_overdraft', DETAIL = bad.code;
        END IF;
    END IF;

    -- Per entry: every posting arrives in this one statement, lines 1..n, seq and time copied
    -- from the entry, phases allowed by the kind, balanced per phase and currency.
    WITH g AS MATERIALIZED (
        SELECT p.entry_id, count(*) AS n, min(p.line) AS lo, max(p.line) AS hi,
               min(p.seq) AS seq_lo, max(p.seq) AS seq_hi, min(p.posted_at) AS at_lo, max(p.posted_at) AS at_hi,
               bool_and(p.phase = 'posted') AS all_posted, bool_and(p.phase = 'hold') AS all_hold,
               bool_and(p.phase = 'release') AS all_release, bool_or(p.phase = 'posted') AS any_posted,
               bool_and(p.phase IN ('posted', 'release')) AS posted_or_release
          FROM new_postings p GROUP BY p.entry_id
    ), ge AS MATERIALIZED (
        SELECT g.*, e.kind, e.posting_count, e.seq, e.posted_at, e.target_id
          FROM g CROSS JOIN LATERAL (SELECT * FROM ledger_entries e WHERE e.id = g.entry_id OFFSET 0) e
    )
    SELECT (SELECT row(ge.entry_id, ge.kind, ge.n, ge.posting_count)::text FROM ge
             WHERE ge.n <> ge.posting_count OR ge.lo <> 1 OR ge.hi <> ge.n
                OR ge.seq_lo <> ge.seq OR ge.seq_hi <> ge.seq OR ge.at_lo <> ge.posted_at OR ge.at_hi <> ge.posted_at
                OR NOT CASE ge.kind
                       WHEN 'standard' THEN ge.all_posted
                       WHEN 'reversal' THEN ge.all_posted
                       WHEN 'pending'  THEN ge.all_hold
                       WHEN 'void'     THEN ge.all_release
                       WHEN 'commit'   THEN ge.posted_or_release AND ge.any_posted END
             LIMIT 1) AS problem,
           (SELECT count(*) FROM ge) AS found,
           (SELECT count(*) FROM g) AS expected,
           (SELECT bool_or(ge.target_id IS NOT NULL) FROM ge) AS has_targets
      INTO bad;
    IF bad.found <> bad.expected THEN
        RAISE EXCEPTION 'postings name an entry that does not exist'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entry_postings';
    END IF;
    v_has_targets := coalesce(bad.has_targets, false);
    IF bad.problem IS NOT NULL THEN
        RAISE EXCEPTION 'postings do not match their entry (entry, kind, postings, declared): %', bad.problem
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_postings';
    END IF;

    SELECT entry_id, phase, currency INTO bad
      FROM new_postings
     GROUP BY entry_id, phase, currency
    HAVING sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry %: % % postings do not balance', bad.entry_id, bad.phase, bad.currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_unbalanced';
    END IF;

    -- Commits and voids release exactly the holds of a pending entry; a commit posts no more
    -- than was held, on accounts and sides that were held; a reversal mirrors the posted
    -- postings of its target with sides swapped.
    IF v_has_targets THEN
        SELECT x.* INTO bad FROM (
            WITH resolving AS MATERIALIZED (
                SELECT e.id, e.kind, e.target_id, t.kind AS target_kind
                  FROM (SELECT DISTINCT entry_id FROM new_postings) n
                 CROSS JOIN LATERAL (SELECT * FROM ledger_entries e WHERE e.id = n.entry_id OFFSET 0) e
                  LEFT JOIN LATERAL (SELECT * FROM ledger_entries t WHERE t.id = e.target_id OFFSET 0) t ON true
                 WHERE e.target_id IS NOT NULL
            ), mine AS (
                SELECT r.id, p.account_id, p.side, p.phase, sum(p.amount) AS amount
                  FROM resolving r JOIN new_postings p ON p.entry_id = r.id
                 GROUP BY r.id, p.account_id, p.side, p.phase
            ), theirs AS (
                SELECT r.id, p.account_id,
                       CASE WHEN r.kind = 'reversal' THEN CASE p.side WHEN 'debit' THEN 'credit' ELSE 'debit' END
                            ELSE p.side END AS side,
                       p.phase, sum(p.amount) AS amount
                  FROM resolving r
                 CROSS JOIN LATERAL (SELECT * FROM ledger_postings p WHERE p.entry_id = r.target_id OFFSET 0) p
                 GROUP BY r.id, p.account_id, p.side, p.phase, r.kind
            )
            SELECT r.id, r.kind, r.target_kind, NULL::text AS problem FROM resolving r
             WHERE r.target_kind IS NULL
                OR (r.kind IN ('commit', 'void') AND r.target_kind <> 'pending')
                OR (r.kind = 'reversal' AND r.target_kind NOT IN ('standard', 'commit'))
            UNION ALL
            SELECT r.id, r.kind, r.target_kind, 'release' FROM resolving r
             WHERE r.kind IN ('commit', 'void') AND EXISTS (
                   SELECT account_id, side, amount FROM mine m WHERE m.id = r.id AND m.phase = 'release'
                   EXCEPT
                   SELECT account_id, side, amount FROM theirs t WHERE t.id = r.id AND t.phase = 'hold'
                   UNION ALL (
                   SELECT account_id, side, amount FROM theirs t WHERE t.id = r.id AND t.phase = 'hold'
                   EXCEPT
                   SELECT account_id, side, amount FROM mine m WHERE m.id = r.id AND m.phase = 'release'))
            UNION ALL
            SELECT r.id, r.kind, r.target_kind, 'commit' FROM resolving r
             WHERE r.kind = 'commit' AND EXISTS (
                   SELECT 1 FROM mine m
                     LEFT JOIN theirs t ON t.id = m.id AND t.phase = 'hold'
                                       AND t.account_id = m.account_id AND t.side = m.side
                    WHERE m.id = r.id AND m.phase = 'posted' AND (t.amount IS NULL OR m.amount > t.amount))
            UNION ALL
            SELECT r.id, r.kind, r.target_kind, 'reversal' FROM resolving r
             WHERE r.kind = 'reversal' AND EXISTS (
                   SELECT account_id, side, amount FROM mine m WHERE m.id = r.id
                   EXCEPT
                   SELECT account_id, side, amount FROM theirs t WHERE t.id = r.id AND t.phase = 'posted'
                   UNION ALL (
                   SELECT account_id, side, amount FROM theirs t WHERE t.id = r.id AND t.phase = 'posted'
                   EXCEPT
                   SELECT account_id, side, amount FROM mine m WHERE m.id = r.id))
        ) x LIMIT 1;
        IF FOUND THEN
            IF bad.problem IS NULL THEN
                RAISE EXCEPTION 'entry %: a % cannot target a % entry', bad.id, bad.kind, coalesce(bad.target_kind, 'missing')
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_target';
            END IF;
            RAISE EXCEPTION 'entry %: % postings do not mirror the target entry', bad.id, bad.kind
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_mirror';
        END IF;
    END IF;

    -- Move each account to the last link of its chain.
    UPDATE ledger_accounts a
       SET posted_debits = l.posted_debits, posted_credits = l.posted_credits,
           pending_debits = l.pending_debits, pending_credits = l.pending_credits,
           version = l.account_version, last_seq = greatest(a.last_seq, l.seq), last_posted_at = l.posted_at
      FROM (SELECT DISTINCT ON (account_id) account_id, account_version, seq, posted_at,
                   posted_debits, posted_credits, pending_debits, pending_credits
              FROM new_postings ORDER BY account_id, account_version DESC) l
     WHERE a.id = l.account_id
       AND a.id = ANY (ARRAY(SELECT DISTINCT account_id FROM new_postings));
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_postings_apply AFTER INSERT ON ledger_postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_apply();

-- An entry row without postings would be an entry of zero lines. An entry and its postings
-- are inserted in one statement (ledger_post uses data-modifying CTEs), and AFTER STATEMENT
-- triggers fire once the whole statement is done, so this check sees both.
CREATE FUNCTION ledger_entries_have_postings() RETURNS trigger LANGUAGE plpgsql
    SET jit = off SET enable_seqscan = off AS $$
DECLARE
    bad uuid;
BEGIN
    SELECT e.id INTO bad
      FROM new_entries e
      LEFT JOIN LATERAL (SELECT 1 AS x FROM ledger_postings p WHERE p.entry_id = e.id LIMIT 1) p ON true
     WHERE p.x IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry % has no postings (insert an entry and its postings in one statement)', bad
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_postings';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_have_postings AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_have_postings();

-- ledger_post inserts a batch of entries (one or many) with their postings, all or nothing.
--
-- It locks every account the batch names in id order first — the one fixed order that keeps
-- concurrent batches free of deadlocks — then takes sequence numbers and the posting time, so
-- entries sharing an account are numbered in the order they changed it. Entries whose
-- idempotency key already exists are not inserted; the caller compares request_hash.
--
-- Entries are given as parallel arrays (e_*); postings as parallel arrays (p_*) whose p_entry
-- is the 1-based index of their entry. It returns one row per entry.
CREATE FUNCTION ledger_post(
    e_ids uuid[], e_kinds text[], e_keys text[], e_hashes bytea[], e_descriptions text[],
    e_effective timestamptz[], e_metadata jsonb[], e_targets uuid[], e_counts integer[],
    p_entry integer[], p_accounts text[], p_phases text[], p_sides text[], p_amounts numeric[],
    p_currencies text[]
) RETURNS TABLE (idx integer, id uuid, seq bigint, posted_at timestamptz, effective_at timestamptz,
                 inserted boolean, request_hash bytea)
LANGUAGE plpgsql SET jit = off AS $$
#variable_conflict use_column
DECLARE
    v_now    timestamptz;
    v_idx    integer[];
    v_ids    uuid[];
    v_seqs   bigint[];
    v_eff    timestamptz[];
    v_hashes bytea[];
    v_codes    text[];
    v_aids     bigint[];
    v_versions bigint[];
    v_pd       numeric[];
    v_pc       numeric[];
    v_hd       numeric[];
    v_hc       numeric[];
    v_floor    timestamptz;
BEGIN
    -- Lock and read the accounts in one pass; the postings below find theirs by hash.
    SELECT array_agg(a.code), array_agg(a.id), array_agg(a.version), array_agg(a.posted_debits),
           array_agg(a.posted_credits), array_agg(a.pending_debits), array_agg(a.pending_credits),
           max(a.last_posted_at)
      INTO v_codes, v_aids, v_versions, v_pd, v_pc, v_hd, v_hc, v_floor
      FROM (SELECT * FROM ledger_accounts a WHERE a.code = ANY (p_accounts) ORDER BY a.id FOR NO KEY UPDATE) a;
    -- The posting time never goes back on an account, even if the clock steps back.
    v_now := greatest(clock_timestamp(), v_floor);

    -- One statement inserts the entries and their postings, so the statement triggers of
    -- both tables see them together.
    WITH input AS (
        SELECT u.*, nextval('ledger_entry_seq') AS seq
          FROM unnest(e_ids, e_kinds, e_keys, e_hashes, e_descriptions, e_effective, e_metadata,
                      e_targets, e_counts) WITH ORDINALITY
               AS u(id, kind, key, hash, description, effective_at, metadata, target_id, cnt, idx)
    ), ins AS (
        INSERT INTO ledger_entries AS le (id, seq, kind, idempotency_key, request_hash, description,
                                          effective_at, posted_at, metadata, target_id, posting_count)
        SELECT i.id, i.seq, i.kind, i.key, i.hash, coalesce(i.description, ''),
               coalesce(i.effective_at, v_now), v_now, coalesce(i.metadata, '{}'), i.target_id, i.cnt
          FROM input i
         -- Keys in one order in every batch: two batches sharing keys wait on each other's
         -- keys in the same order, never in a cycle.
         ORDER BY i.key
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING le.id, le.seq, le.effective_at, le.request_hash
    ), inserted AS (
        SELECT i.idx::integer AS idx, ins.id, ins.seq, ins.effective_at, ins.request_hash
          FROM ins JOIN input i ON i.id = ins.id
    ), posted AS (
        INSERT INTO ledger_postings (entry_id, line, account_id, phase, side, amount, currency, seq,
                                     posted_at, account_version, posted_debits, posted_credits,
                                     pending_debits, pending_credits)
        SELECT x.entry_id, x.line, x.account_id, x.phase, x.side, x.amount, x.currency, x.seq, v_now,
               x.version + row_number() OVER w,
               x.pd + sum(CASE WHEN x.phase = 'posted' AND x.side = 'debit' THEN x.amount ELSE 0 END) OVER w,
               x.pc + sum(CASE WHEN x.phase = 'posted' AND x.side = 'credit' THEN x.amount ELSE 0 END) OVER w,
               x.hd + sum(CASE WHEN x.side = 'debit' THEN
                   CASE x.phase WHEN 'hold' THEN x.amount WHEN 'release' THEN -x.amount ELSE 0 END ELSE 0 END) OVER w,
               x.hc + sum(CASE WHEN x.side = 'credit' THEN
                   CASE x.phase WHEN 'hold' THEN x.amount WHEN 'release' THEN -x.amount ELSE 0 END ELSE 0 END) OVER w
          FROM (
            SELECT i.id AS entry_id, i.seq,
                   row_number() OVER (PARTITION BY p.e ORDER BY p.ord)::smallint AS line,
                   coalesce(a.id, ledger_unknown_account(p.code)) AS account_id,
                   p.phase, p.side, p.amount, p.currency,
                   a.version, a.posted_debits AS pd, a.posted_credits AS pc,
                   a.pending_debits AS hd, a.pending_credits AS hc
              FROM unnest(p_entry, p_accounts, p_phases, p_sides, p_amounts, p_currencies) WITH ORDINALITY
                   AS p(e, code, phase, side, amount, currency, ord)
              JOIN inserted i ON i.idx = p.e
              LEFT JOIN unnest(v_codes, v_aids, v_versions, v_pd, v_pc, v_hd, v_hc)
                   AS a(code, id, version, posted_debits, posted_credits, pending_debits, pending_credits)
                   ON a.code = p.code
          ) x
        WINDOW w AS (PARTITION BY x.account_id ORDER BY x.seq, x.line ROWS UNBOUNDED PRECEDING)
    )
    SELECT array_agg(i.idx), array_agg(i.id), array_agg(i.seq), array_agg(i.effective_at),
           array_agg(i.request_hash)
      INTO v_idx, v_ids, v_seqs, v_eff, v_hashes
      FROM inserted i;

    RETURN QUERY
    SELECT i.idx, i.id, i.seq, v_now, i.effective_at, true, i.request_hash
      FROM unnest(v_idx, v_ids, v_seqs, v_eff, v_hashes) AS i(idx, id, seq, effective_at, request_hash);

    -- Entries not inserted had an idempotency key that already existed: return those entries
    -- (this statement's snapshot sees them even if a concurrent batch just committed them).
    IF coalesce(cardinality(v_idx), 0) < cardinality(e_ids) THEN
        RETURN QUERY
        SELECT u.idx::integer, le.id, le.seq, le.posted_at, le.effective_at, false, le.request_hash
          FROM unnest(e_keys) WITH ORDINALITY AS u(key, idx)
          JOIN ledger_entries le ON le.idempotency_key = u.key
         WHERE NOT EXISTS (SELECT 1 FROM unnest(v_idx) AS v(idx) WHERE v.idx = u.idx);
    END IF;
END $$;
