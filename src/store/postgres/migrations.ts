/**
 * Numbered schema migrations of the PostgreSQL backend. They run on start, in one transaction that holds a
 * transaction-scoped advisory lock keyed on the schema name, so several processes starting at once apply each
 * migration exactly once and none of them sees a half-migrated schema.
 *
 * Never edit a migration that has shipped: add the next number.
 */
import type { PoolClient } from "pg";
import { ErrorCode, SluiceError } from "../../errors.ts";

export interface Migration {
  version: number;
  name: string;
  /** SQL with `$schema` standing for the quoted schema name and `$name` for the bare one (a validated identifier). */
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: "event log, delivery queues, partitions, dead letters, state",
    sql: `
CREATE TABLE $schema.events (
  seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  bus        text   NOT NULL,
  event_id   text   NOT NULL,
  encoded    text   NOT NULL,
  stored_at  bigint NOT NULL
);
CREATE INDEX events_bus_seq ON $schema.events (bus, seq);
CREATE INDEX events_bus_stored_at ON $schema.events (bus, stored_at);

-- Publisher dedupe, per bus: the first accepted event per key within the window. Older rows are overwritten or pruned.
CREATE TABLE $schema.dedupe (
  bus        text   NOT NULL,
  dedupe_key text   NOT NULL,
  seq        bigint NOT NULL,
  stored_at  bigint NOT NULL,
  -- Key first: the append's lookup is dedupe_key = ANY(...) and can use it as an index condition.
  PRIMARY KEY (dedupe_key, bus)
);
CREATE INDEX dedupe_stored_at ON $schema.dedupe (stored_at);

-- One row per pending delivery. visible_at is when it may be leased: the availability time when not leased,
-- the lease expiry when leased. Within one (queue, partition_key) only the head (oldest) row is unblocked;
-- the others wait with blocked = true, so the lease scan never walks over a held key.
-- fillfactor leaves room on each page so that lease, retry and extend (which change no indexed column)
-- are HOT updates that touch no index.
CREATE TABLE $schema.deliveries (
  id            bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue         text    NOT NULL,
  partition_key text,
  payload       text    NOT NULL,
  visible_at    bigint  NOT NULL,
  enqueued_at   bigint  NOT NULL,
  attempt       integer NOT NULL DEFAULT 0,
  lease_token   text,
  last_error    text,
  blocked       boolean NOT NULL DEFAULT false
) WITH (fillfactor = 80);
CREATE INDEX deliveries_leasable ON $schema.deliveries (id) WHERE NOT blocked;
CREATE INDEX deliveries_queue_leasable ON $schema.deliveries (queue, id) WHERE NOT blocked;
CREATE INDEX deliveries_key_blocked ON $schema.deliveries (queue, partition_key, id) WHERE blocked;

-- Per (queue, partition_key): how many deliveries are pending. Its row lock serialises every change of a
-- key's head across processes (enqueue, ack, dead-letter); the row is deleted when the key drains.
CREATE TABLE $schema.partitions (
  queue         text   NOT NULL,
  partition_key text   NOT NULL,
  pending       bigint NOT NULL,
  PRIMARY KEY (queue, partition_key)
);

CREATE TABLE $schema.dead_letters (
  id            bigint  PRIMARY KEY,
  queue         text    NOT NULL,
  partition_key text,
  payload       text    NOT NULL,
  reason        text    NOT NULL,
  attempts      integer NOT NULL,
  last_error    text,
  enqueued_at   bigint  NOT NULL,
  dead_at       bigint  NOT NULL
);
CREATE INDEX dead_letters_queue_id ON $schema.dead_letters (queue, id);

CREATE TABLE $schema.state (
  namespace  text NOT NULL,
  key        text NOT NULL,
  value      text NOT NULL,
  expires_at bigint,
  PRIMARY KEY (namespace, key)
);
`,
  },
  {
    version: 2,
    name: "server-side append and settle functions (one round trip each)",
    sql: `
-- The functions below plan their array-driven queries for the actual arrays on every call
-- (plan_cache_mode = force_custom_plan): the generic plan plpgsql would switch to after five calls guesses array
-- sizes and picks worse joins (measured 2-5x slower for ack and lease).
--
-- An append's checks and writes in one call. VOLATILE plpgsql gives each statement a fresh snapshot, so the
-- query below, run after the append lock, sees every earlier append: appends of all processes commit one at a
-- time (seq increases in commit order, dedupe is exact). The query: the dedupe check of each entry ($1-$7), the
-- new events, their dedupe keys, and their deliveries ($8-$13) with per-key heads. The key rows in partitions
-- are upserted in a fixed order (locking them) before the deliveries get their ids, so within a key ids follow
-- commit order; a new delivery is its key's head only when the key had nothing pending and it is the key's
-- first in this append. Returns (ord, seq, dup) per entry (and a null row when it NOTIFYed $14).
CREATE FUNCTION $schema.append_entries(
  text[], text[], text[], int8[], text[], int8[], text[], int8[], text[], text[], text[], int8[], int8[], text
) RETURNS TABLE (ord bigint, seq bigint, dup boolean) LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_custom_plan AS $fn$
#variable_conflict use_column
BEGIN
  PERFORM pg_advisory_xact_lock(20932, hashtext('$name'));
  RETURN QUERY
    WITH ev AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[])
        WITH ORDINALITY AS t(bus, event_id, encoded, now, dedupe_key, win, ord)
    ), known AS (
      -- ANY on both primary-key columns: an index scan, never a scan of the whole dedupe table.
      SELECT bus, dedupe_key, seq, stored_at FROM $schema.dedupe WHERE bus = ANY($7::text[]) AND dedupe_key = ANY($5::text[])
    ), dup AS (
      -- Within the window of the first accepted append (a duplicate does not extend it).
      SELECT ev.ord, known.seq FROM ev JOIN known ON known.bus = ev.bus AND known.dedupe_key = ev.dedupe_key
      WHERE ev.win > 0 AND ev.now - known.stored_at < ev.win
    ), fresh AS (
      SELECT ev.*, row_number() OVER (ORDER BY ev.ord) AS rn FROM ev WHERE ev.ord NOT IN (SELECT ord FROM dup)
    ), ins AS (
      INSERT INTO $schema.events (bus, event_id, encoded, stored_at)
      SELECT bus, event_id, encoded, now FROM fresh ORDER BY rn
      RETURNING seq
    ), stored AS (
      -- Identity values are drawn in row order, so the n-th smallest new seq belongs to the n-th fresh entry.
      SELECT fresh.ord, fresh.bus, fresh.dedupe_key, fresh.now, s.seq
      FROM fresh JOIN (SELECT seq, row_number() OVER (ORDER BY seq) AS rn FROM ins) s USING (rn)
    ), dd_new AS (
      -- Keys the lookup did not find: a plain insert (cheaper than ON CONFLICT). Under the append lock nobody
      -- else inserts dedupe keys; the prune only deletes.
      INSERT INTO $schema.dedupe (bus, dedupe_key, seq, stored_at)
      SELECT DISTINCT ON (bus, dedupe_key) bus, dedupe_key, seq, now FROM stored
      WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.bus = stored.bus AND known.dedupe_key = stored.dedupe_key)
      ORDER BY bus, dedupe_key, ord DESC
      RETURNING 1
    ), dd_old AS (
      -- Keys whose window expired (or with dedupe off): overwrite, or insert if the prune deleted them meanwhile.
      INSERT INTO $schema.dedupe AS d (bus, dedupe_key, seq, stored_at)
      SELECT DISTINCT ON (bus, dedupe_key) bus, dedupe_key, seq, now FROM stored
      WHERE EXISTS (SELECT 1 FROM known WHERE known.bus = stored.bus AND known.dedupe_key = stored.dedupe_key)
      ORDER BY bus, dedupe_key, ord DESC
      ON CONFLICT (bus, dedupe_key) DO UPDATE SET seq = EXCLUDED.seq, stored_at = EXCLUDED.stored_at
      RETURNING 1
    ), dv AS (
      SELECT t.* FROM unnest($8::int8[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::int8[])
        WITH ORDINALITY AS t(entry, queue, pk, payload, visible_at, enqueued_at, ord)
      WHERE t.entry IN (SELECT ord FROM stored)
    ), cnt AS (
      SELECT queue, pk, count(*) AS n FROM dv WHERE pk IS NOT NULL GROUP BY queue, pk
    ), up AS (
      INSERT INTO $schema.partitions AS p (queue, partition_key, pending)
      SELECT queue, pk, n FROM cnt ORDER BY queue, pk
      ON CONFLICT (queue, partition_key) DO UPDATE SET pending = p.pending + EXCLUDED.pending
      RETURNING queue, partition_key, pending
    ), dl AS (
      INSERT INTO $schema.deliveries (queue, partition_key, payload, visible_at, enqueued_at, blocked)
      SELECT dv.queue, dv.pk, dv.payload, dv.visible_at, dv.enqueued_at,
             CASE WHEN dv.pk IS NULL THEN false
                  ELSE up.pending - cnt.n > 0 OR row_number() OVER (PARTITION BY dv.queue, dv.pk ORDER BY dv.ord) > 1
             END
      FROM dv
      LEFT JOIN cnt ON cnt.queue = dv.queue AND cnt.pk = dv.pk
      LEFT JOIN up ON up.queue = dv.queue AND up.partition_key = dv.pk
      ORDER BY dv.ord
      RETURNING 1
    ), notified AS (
      SELECT pg_notify($14, '') FROM (SELECT 1 FROM dl LIMIT 1) one
    )
    SELECT ord, seq, false AS dup FROM stored
    UNION ALL SELECT ord, seq, true FROM dup
    UNION ALL SELECT NULL, NULL, NULL FROM notified;
END
$fn$;

-- Moves the heads of keys whose head left the queue; called after their partitions rows were locked and
-- decremented in the same transaction, so this statement's snapshot sees every delivery of those keys.
-- Drained keys ($1, $2) lose their row; of each live key ($3, $4) the next pending delivery becomes the head.
CREATE FUNCTION $schema.move_heads(text[], text[], text[], text[], text) RETURNS void LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_custom_plan AS $fn$
DECLARE
  v_unblocked int8;
BEGIN
  DELETE FROM $schema.partitions p USING unnest($1, $2) AS r(q, k)
  WHERE p.queue = r.q AND p.partition_key = r.k AND p.pending <= 0;
  WITH unblocked AS (
    -- A TID scan of each key's next delivery (a join on ctid would hash the whole table).
    UPDATE $schema.deliveries d SET blocked = false
    WHERE d.ctid = ANY(ARRAY(
      SELECT nxt.ctid FROM unnest($3, $4) AS r(q, k)
      CROSS JOIN LATERAL (
        SELECT x.ctid FROM $schema.deliveries x
        WHERE x.queue = r.q AND x.partition_key = r.k AND x.blocked
        ORDER BY x.id LIMIT 1
      ) nxt
    ))
    RETURNING d.id
  ) SELECT count(*) INTO v_unblocked FROM unblocked;
  IF v_unblocked > 0 THEN PERFORM pg_notify($5, ''); END IF;
END
$fn$;

-- Acks leases ($1 ids, $2 tokens) that may hold keys, in one call: deletes them, decrements their keys (taking
-- the key rows' locks), then moves the heads. Returns the ids it removed.
CREATE FUNCTION $schema.ack_keyed(int8[], text[], text) RETURNS SETOF text LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_custom_plan AS $fn$
DECLARE
  v_ids text[]; v_dq text[]; v_dk text[]; v_lq text[]; v_lk text[];
BEGIN
  WITH gone AS (
    DELETE FROM $schema.deliveries d USING unnest($1, $2) AS a(id, token)
    WHERE d.id = ANY($1) AND NOT d.blocked AND d.id = a.id AND d.lease_token = a.token
    RETURNING d.id, d.queue, d.partition_key
  ), cnt AS (
    SELECT queue, partition_key, count(*) AS n FROM gone WHERE partition_key IS NOT NULL GROUP BY queue, partition_key
  ), dec AS (
    UPDATE $schema.partitions p SET pending = p.pending - cnt.n FROM cnt
    WHERE p.queue = cnt.queue AND p.partition_key = cnt.partition_key
    RETURNING p.queue, p.partition_key, p.pending
  )
  SELECT (SELECT array_agg(id::text) FROM gone),
         (SELECT array_agg(queue) FROM dec WHERE pending <= 0), (SELECT array_agg(partition_key) FROM dec WHERE pending <= 0),
         (SELECT array_agg(queue) FROM dec WHERE pending > 0), (SELECT array_agg(partition_key) FROM dec WHERE pending > 0)
  INTO v_ids, v_dq, v_dk, v_lq, v_lk;
  IF v_dq IS NOT NULL OR v_lq IS NOT NULL THEN
    PERFORM $schema.move_heads(coalesce(v_dq, '{}'), coalesce(v_dk, '{}'), coalesce(v_lq, '{}'), coalesce(v_lk, '{}'), $3);
  END IF;
  RETURN QUERY SELECT unnest(coalesce(v_ids, '{}'));
END
$fn$;

-- Moves one leased delivery ($1 id, $2 token) to the dead letters with reason $3, error $4 (else its last
-- error), at $5, and moves its key's head. False when the lease is not held.
CREATE FUNCTION $schema.dead_letter(int8, text, text, text, int8, text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  v_queue text; v_key text; v_pending int8;
BEGIN
  WITH gone AS (
    DELETE FROM $schema.deliveries WHERE id = $1 AND NOT blocked AND lease_token = $2
    RETURNING id, queue, partition_key, payload, attempt, last_error, enqueued_at
  )
  INSERT INTO $schema.dead_letters (id, queue, partition_key, payload, reason, attempts, last_error, enqueued_at, dead_at)
  SELECT id, queue, partition_key, payload, $3, attempt, COALESCE($4, last_error), enqueued_at, $5 FROM gone
  RETURNING queue, partition_key INTO v_queue, v_key;
  IF NOT FOUND THEN RETURN false; END IF;
  IF v_key IS NOT NULL THEN
    UPDATE $schema.partitions SET pending = pending - 1 WHERE queue = v_queue AND partition_key = v_key
    RETURNING pending INTO v_pending;
    IF v_pending <= 0 THEN
      PERFORM $schema.move_heads(ARRAY[v_queue], ARRAY[v_key], '{}', '{}', $6);
    ELSE
      PERFORM $schema.move_heads('{}', '{}', ARRAY[v_queue], ARRAY[v_key], $6);
    END IF;
  END IF;
  RETURN true;
END
$fn$;
`,
  },
  {
    version: 3,
    name: "leaner indexes: events keyed (bus, seq), BRIN on event and dedupe times, no separate delivery id index",
    sql: `
-- Two btree inserts fewer per event: (bus, seq) serves reads by bus in seq order and is the key, and time
-- ranges (replay, retention) use a BRIN index, since events are stored in time order.
ALTER TABLE $schema.events DROP CONSTRAINT events_pkey;
DROP INDEX $schema.events_bus_seq;
ALTER TABLE $schema.events ADD PRIMARY KEY (bus, seq);
DROP INDEX $schema.events_bus_stored_at;
CREATE INDEX events_stored_at ON $schema.events USING brin (stored_at);

-- Dedupe rows are only ever pruned by time, which follows insertion order: a BRIN index is enough.
DROP INDEX $schema.dedupe_stored_at;
CREATE INDEX dedupe_stored_at ON $schema.dedupe USING brin (stored_at);

-- One index fewer per delivery: a leased delivery is never blocked, so lookups of a lease by id (ack, retry,
-- extend, dead-letter) say NOT blocked and use deliveries_leasable; lease and head moves address rows by ctid.
ALTER TABLE $schema.deliveries DROP CONSTRAINT deliveries_pkey;
`,
  },
  {
    version: 4,
    name: "append's dedupe lookup always through the key index",
    sql: `
-- A fresh or fast-growing dedupe table has no statistics (autovacuum analyzes it a minute later at best), and the
-- planner then took a sequential scan for the key lookup: one comparison per stored key and batch key, so an append
-- of 400 events went from ~25 ms at 12 000 keys to ~90 ms at 60 000 (and past jit_above_cost, into JIT
-- compilation). Every table access in append_entries has an index to use, so forbidding sequential scans in it
-- only ever removes that plan.
ALTER FUNCTION $schema.append_entries(text[], text[], text[], int8[], text[], int8[], text[], int8[], text[], text[], text[], int8[], int8[], text)
  SET enable_seqscan = off;
`,
  },
  {
    version: 5,
    name: "ack_keyed commits asynchronously",
    sql: `
CREATE OR REPLACE FUNCTION $schema.ack_keyed(int8[], text[], text) RETURNS SETOF text LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_custom_plan AS $fn$
DECLARE
  v_ids text[]; v_dq text[]; v_dk text[]; v_lq text[]; v_lk text[];
BEGIN
  -- Commits asynchronously, like the keyless ack (see deliveries.ts): lost only with a server crash, and then
  -- the deliveries run again.
  PERFORM set_config('synchronous_commit', 'off', true);
  WITH gone AS (
    DELETE FROM $schema.deliveries d USING unnest($1, $2) AS a(id, token)
    WHERE d.id = ANY($1) AND NOT d.blocked AND d.id = a.id AND d.lease_token = a.token
    RETURNING d.id, d.queue, d.partition_key
  ), cnt AS (
    SELECT queue, partition_key, count(*) AS n FROM gone WHERE partition_key IS NOT NULL GROUP BY queue, partition_key
  ), dec AS (
    UPDATE $schema.partitions p SET pending = p.pending - cnt.n FROM cnt
    WHERE p.queue = cnt.queue AND p.partition_key = cnt.partition_key
    RETURNING p.queue, p.partition_key, p.pending
  )
  SELECT (SELECT array_agg(id::text) FROM gone),
         (SELECT array_agg(queue) FROM dec WHERE pending <= 0), (SELECT array_agg(partition_key) FROM dec WHERE pending <= 0),
         (SELECT array_agg(queue) FROM dec WHERE pending > 0), (SELECT array_agg(partition_key) FROM dec WHERE pending > 0)
  INTO v_ids, v_dq, v_dk, v_lq, v_lk;
  IF v_dq IS NOT NULL OR v_lq IS NOT NULL THEN
    PERFORM $schema.move_heads(coalesce(v_dq, '{}'), coalesce(v_dk, '{}'), coalesce(v_lq, '{}'), coalesce(v_lk, '{}'), $3);
  END IF;
  RETURN QUERY SELECT unnest(coalesce(v_ids, '{}'));
END
$fn$;
`,
  },
  {
    version: 6,
    name: "append_entries: each event's body sent once, cached plans",
    sql: `
-- Two changes to append_entries (migration 2), measured with 400-event and 1-event appends under load:
-- - A delivery's payload ($11) is null when it is the event itself: the body crosses the wire and is parsed once,
--   not once more per delivery (client CPU of 400-event appends with 3 deliveries each: 112-116 -> 49-59 us per
--   event; with one: 39-49 -> 32-35).
-- - The plan is cached (plan_cache_mode = auto) instead of replanned on every call: replanning cost about half of
--   a one-event append's server CPU (1.26-1.56 ms -> 0.78 ms), and the cached plan runs 400-event appends no slower
--   (server CPU 47 -> 35-40 us per event; with sequential scans off, the dedupe lookup is the key index whatever
--   the array sizes).
CREATE OR REPLACE FUNCTION $schema.append_entries(
  text[], text[], text[], int8[], text[], int8[], text[], int8[], text[], text[], text[], int8[], int8[], text
) RETURNS TABLE (ord bigint, seq bigint, dup boolean) LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = auto SET enable_seqscan = off AS $fn$
#variable_conflict use_column
BEGIN
  PERFORM pg_advisory_xact_lock(20932, hashtext('$name'));
  RETURN QUERY
    WITH ev AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[])
        WITH ORDINALITY AS t(bus, event_id, encoded, now, dedupe_key, win, ord)
    ), known AS (
      -- ANY on both primary-key columns: an index scan, never a scan of the whole dedupe table.
      SELECT bus, dedupe_key, seq, stored_at FROM $schema.dedupe WHERE bus = ANY($7::text[]) AND dedupe_key = ANY($5::text[])
    ), dup AS (
      -- Within the window of the first accepted append (a duplicate does not extend it).
      SELECT ev.ord, known.seq FROM ev JOIN known ON known.bus = ev.bus AND known.dedupe_key = ev.dedupe_key
      WHERE ev.win > 0 AND ev.now - known.stored_at < ev.win
    ), fresh AS (
      SELECT ev.*, row_number() OVER (ORDER BY ev.ord) AS rn FROM ev WHERE ev.ord NOT IN (SELECT ord FROM dup)
    ), ins AS (
      INSERT INTO $schema.events (bus, event_id, encoded, stored_at)
      SELECT bus, event_id, encoded, now FROM fresh ORDER BY rn
      RETURNING seq
    ), stored AS (
      -- Identity values are drawn in row order, so the n-th smallest new seq belongs to the n-th fresh entry.
      SELECT fresh.ord, fresh.bus, fresh.dedupe_key, fresh.now, s.seq
      FROM fresh JOIN (SELECT seq, row_number() OVER (ORDER BY seq) AS rn FROM ins) s USING (rn)
    ), dd_new AS (
      -- Keys the lookup did not find: a plain insert (cheaper than ON CONFLICT). Under the append lock nobody
      -- else inserts dedupe keys; the prune only deletes.
      INSERT INTO $schema.dedupe (bus, dedupe_key, seq, stored_at)
      SELECT DISTINCT ON (bus, dedupe_key) bus, dedupe_key, seq, now FROM stored
      WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.bus = stored.bus AND known.dedupe_key = stored.dedupe_key)
      ORDER BY bus, dedupe_key, ord DESC
      RETURNING 1
    ), dd_old AS (
      -- Keys whose window expired (or with dedupe off): overwrite, or insert if the prune deleted them meanwhile.
      INSERT INTO $schema.dedupe AS d (bus, dedupe_key, seq, stored_at)
      SELECT DISTINCT ON (bus, dedupe_key) bus, dedupe_key, seq, now FROM stored
      WHERE EXISTS (SELECT 1 FROM known WHERE known.bus = stored.bus AND known.dedupe_key = stored.dedupe_key)
      ORDER BY bus, dedupe_key, ord DESC
      ON CONFLICT (bus, dedupe_key) DO UPDATE SET seq = EXCLUDED.seq, stored_at = EXCLUDED.stored_at
      RETURNING 1
    ), dv AS (
      -- A null payload is the entry's own event ($3), sent once however many deliveries it has.
      SELECT t.entry, t.queue, t.pk, coalesce(t.payload, ev.encoded) AS payload, t.visible_at, t.enqueued_at, t.ord
      FROM unnest($8::int8[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::int8[])
        WITH ORDINALITY AS t(entry, queue, pk, payload, visible_at, enqueued_at, ord)
      JOIN ev ON ev.ord = t.entry
      WHERE t.entry IN (SELECT ord FROM stored)
    ), cnt AS (
      SELECT queue, pk, count(*) AS n FROM dv WHERE pk IS NOT NULL GROUP BY queue, pk
    ), up AS (
      INSERT INTO $schema.partitions AS p (queue, partition_key, pending)
      SELECT queue, pk, n FROM cnt ORDER BY queue, pk
      ON CONFLICT (queue, partition_key) DO UPDATE SET pending = p.pending + EXCLUDED.pending
      RETURNING queue, partition_key, pending
    ), dl AS (
      INSERT INTO $schema.deliveries (queue, partition_key, payload, visible_at, enqueued_at, blocked)
      SELECT dv.queue, dv.pk, dv.payload, dv.visible_at, dv.enqueued_at,
             CASE WHEN dv.pk IS NULL THEN false
                  ELSE up.pending - cnt.n > 0 OR row_number() OVER (PARTITION BY dv.queue, dv.pk ORDER BY dv.ord) > 1
             END
      FROM dv
      LEFT JOIN cnt ON cnt.queue = dv.queue AND cnt.pk = dv.pk
      LEFT JOIN up ON up.queue = dv.queue AND up.partition_key = dv.pk
      ORDER BY dv.ord
      RETURNING 1
    ), notified AS (
      SELECT pg_notify($14, '') FROM (SELECT 1 FROM dl LIMIT 1) one
    )
    SELECT ord, seq, false AS dup FROM stored
    UNION ALL SELECT ord, seq, true FROM dup
    UNION ALL SELECT NULL, NULL, NULL FROM notified;
END
$fn$;
`,
  },
  {
    version: 7,
    name: "deliveries fillfactor 50: leases are HOT updates",
    sql: `
-- A delivery is updated about once (its lease) before it is deleted (its ack). At fillfactor 80 a page of ~400-byte
-- rows had room for the new versions of a fifth of them, so 70% of leases were not HOT and inserted into both lease
-- indexes; at 50, 89% are HOT, and the lease's server CPU per delivery fell from 21.5-22 to 10.5-12.5 us (400-event
-- appends, leases of 256 and acks interleaved, two runs each). New pages only; the queue table turns over quickly.
ALTER TABLE $schema.deliveries SET (fillfactor = 50);
`,
  },
  {
    version: 8,
    name: "append_and_lease: an append that inserts the deliveries it leases already leased",
    sql: `
-- append_entries (migration 6) with two more arguments: up to $15 of the new deliveries that are leasable at once
-- (available at the append's now and the head of their key, if any) are inserted leased until $16, oldest first,
-- with attempt 1 and a fresh token: an appendAndLease costs no lease statement (no row lock, no update, no lease
-- round trip). Returns the entries' rows (ord, seq, dup) as before, one row (ord of the delivery in $8-$13, its id as
-- seq, dup null, token) per leased delivery, and the null marker row when it NOTIFYed $14, which it does only when
-- some new delivery was left unleased. With $15 = 0 it is append_entries. The event bodies ($3) come as one JSON
-- array of strings: the client encodes it natively (JSON.stringify), where a text[] literal took a regex escape of
-- every body (client CPU of 400 bodies of ~300 bytes: 3.4 -> 0.5 us each).
CREATE FUNCTION $schema.append_and_lease(
  text[], text[], json, int8[], text[], int8[], text[], int8[], text[], text[], text[], int8[], int8[], text, int8, int8
) RETURNS TABLE (ord bigint, seq bigint, dup boolean, token text) LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = auto SET enable_seqscan = off AS $fn$
#variable_conflict use_column
BEGIN
  PERFORM pg_advisory_xact_lock(20932, hashtext('$name'));
  RETURN QUERY
    WITH ev AS (
      SELECT * FROM unnest($1::text[], $2::text[],
          ARRAY(SELECT j.body FROM json_array_elements_text($3) WITH ORDINALITY AS j(body, i) ORDER BY j.i),
          $4::int8[], $5::text[], $6::int8[])
        WITH ORDINALITY AS t(bus, event_id, encoded, now, dedupe_key, win, ord)
    ), known AS (
      -- ANY on both primary-key columns: an index scan, never a scan of the whole dedupe table.
      SELECT bus, dedupe_key, seq, stored_at FROM $schema.dedupe WHERE bus = ANY($7::text[]) AND dedupe_key = ANY($5::text[])
    ), dup AS (
      -- Within the window of the first accepted append (a duplicate does not extend it).
      SELECT ev.ord, known.seq FROM ev JOIN known ON known.bus = ev.bus AND known.dedupe_key = ev.dedupe_key
      WHERE ev.win > 0 AND ev.now - known.stored_at < ev.win
    ), fresh AS (
      SELECT ev.*, row_number() OVER (ORDER BY ev.ord) AS rn FROM ev WHERE ev.ord NOT IN (SELECT ord FROM dup)
    ), ins AS (
      INSERT INTO $schema.events (bus, event_id, encoded, stored_at)
      SELECT bus, event_id, encoded, now FROM fresh ORDER BY rn
      RETURNING seq
    ), stored AS (
      -- Identity values are drawn in row order, so the n-th smallest new seq belongs to the n-th fresh entry.
      SELECT fresh.ord, fresh.bus, fresh.dedupe_key, fresh.now, s.seq
      FROM fresh JOIN (SELECT seq, row_number() OVER (ORDER BY seq) AS rn FROM ins) s USING (rn)
    ), dd_new AS (
      -- Keys the lookup did not find: a plain insert (cheaper than ON CONFLICT). Under the append lock nobody
      -- else inserts dedupe keys; the prune only deletes.
      INSERT INTO $schema.dedupe (bus, dedupe_key, seq, stored_at)
      SELECT DISTINCT ON (bus, dedupe_key) bus, dedupe_key, seq, now FROM stored
      WHERE NOT EXISTS (SELECT 1 FROM known WHERE known.bus = stored.bus AND known.dedupe_key = stored.dedupe_key)
      ORDER BY bus, dedupe_key, ord DESC
      RETURNING 1
    ), dd_old AS (
      -- Keys whose window expired (or with dedupe off): overwrite, or insert if the prune deleted them meanwhile.
      INSERT INTO $schema.dedupe AS d (bus, dedupe_key, seq, stored_at)
      SELECT DISTINCT ON (bus, dedupe_key) bus, dedupe_key, seq, now FROM stored
      WHERE EXISTS (SELECT 1 FROM known WHERE known.bus = stored.bus AND known.dedupe_key = stored.dedupe_key)
      ORDER BY bus, dedupe_key, ord DESC
      ON CONFLICT (bus, dedupe_key) DO UPDATE SET seq = EXCLUDED.seq, stored_at = EXCLUDED.stored_at
      RETURNING 1
    ), dv AS (
      -- A null payload is the entry's own event ($3), sent once however many deliveries it has.
      SELECT t.entry, t.queue, t.pk, coalesce(t.payload, ev.encoded) AS payload, t.visible_at, t.enqueued_at, t.ord
      FROM unnest($8::int8[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::int8[])
        WITH ORDINALITY AS t(entry, queue, pk, payload, visible_at, enqueued_at, ord)
      JOIN ev ON ev.ord = t.entry
      WHERE t.entry IN (SELECT ord FROM stored)
    ), cnt AS (
      SELECT queue, pk, count(*) AS n FROM dv WHERE pk IS NOT NULL GROUP BY queue, pk
    ), up AS (
      INSERT INTO $schema.partitions AS p (queue, partition_key, pending)
      SELECT queue, pk, n FROM cnt ORDER BY queue, pk
      ON CONFLICT (queue, partition_key) DO UPDATE SET pending = p.pending + EXCLUDED.pending
      RETURNING queue, partition_key, pending
    ), placed AS (
      SELECT dv.*,
             CASE WHEN dv.pk IS NULL THEN false
                  ELSE up.pending - cnt.n > 0 OR row_number() OVER (PARTITION BY dv.queue, dv.pk ORDER BY dv.ord) > 1
             END AS blocked
      FROM dv
      LEFT JOIN cnt ON cnt.queue = dv.queue AND cnt.pk = dv.pk
      LEFT JOIN up ON up.queue = dv.queue AND up.partition_key = dv.pk
    ), ranked AS (
      SELECT placed.*, NOT blocked AND visible_at <= enqueued_at AS leasable,
             row_number() OVER (PARTITION BY NOT blocked AND visible_at <= enqueued_at ORDER BY ord) AS rank
      FROM placed
    ), dl AS (
      INSERT INTO $schema.deliveries (queue, partition_key, payload, visible_at, enqueued_at, blocked, attempt, lease_token)
      SELECT queue, pk, payload, CASE WHEN leased THEN $16 ELSE visible_at END, enqueued_at, blocked,
             CASE WHEN leased THEN 1 ELSE 0 END,
             -- As a lease's token (deliveries.ts): one UUID per call, made unique by the delivery's ordinal.
             CASE WHEN leased THEN CASE WHEN pk IS NULL THEN 'u' ELSE 'k' END || (SELECT gen_random_uuid()::text) || '.' || ord END
      FROM (SELECT ranked.*, leasable AND rank <= $15 AS leased FROM ranked) r
      ORDER BY ord
      RETURNING id, lease_token
    ), leased AS (
      -- Identity values are drawn in row order: the n-th smallest new id belongs to the n-th delivery by ord.
      SELECT d.id, d.lease_token, r.ord
      FROM (SELECT id, lease_token, row_number() OVER (ORDER BY id) AS rn FROM dl) d
      JOIN (SELECT dv.ord, row_number() OVER (ORDER BY dv.ord) AS rn FROM dv) r USING (rn)
      WHERE d.lease_token IS NOT NULL
    ), notified AS (
      SELECT pg_notify($14, '') FROM (SELECT 1 FROM dl WHERE lease_token IS NULL LIMIT 1) one
    )
    SELECT ord, seq, false AS dup, NULL::text AS token FROM stored
    UNION ALL SELECT ord, seq, true, NULL FROM dup
    UNION ALL SELECT ord, id, NULL, lease_token FROM leased
    UNION ALL SELECT NULL, NULL, NULL, NULL FROM notified;
END
$fn$;
`,
  },
];

/** Two-int advisory lock keys: a constant class for Sluice migrations, and the schema name's hash. */
const migrationLockClass = 0x51c3;

/**
 * Creates the schema when absent and applies every migration newer than its `schema_version`.
 * Returns the versions this call applied (empty when another process had already done it).
 */
export async function migrate(client: PoolClient, schema: string, list: readonly Migration[] = migrations): Promise<number[]> {
  const q = quoteIdent(schema);
  const applied: number[] = [];
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [migrationLockClass, schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${q}.schema_version (
         version    integer PRIMARY KEY,
         name       text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${q}.schema_version`);
    const current = rows[0]?.v ?? 0;
    const known = Math.max(0, ...list.map((m) => m.version));
    if (current > known) {
      throw new SluiceError(
        ErrorCode.StoreUnavailable,
        `PostgreSQL schema "${schema}" is at version ${current}, newer than this Sluice knows (${known}): upgrade Sluice`,
      );
    }
    for (const m of [...list].sort((a, b) => a.version - b.version)) {
      if (m.version <= current) continue;
      await client.query(m.sql.replaceAll("$schema", q).replaceAll("$name", schema));
      await client.query(`INSERT INTO ${q}.schema_version (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
  return applied;
}

/** Schema names are restricted so they are safe as identifiers and leave room in NOTIFY channel names. */
export const schemaNamePattern = /^[a-z_][a-z0-9_]{0,47}$/;

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
