/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  The Raft log and hard state, kept in two tables.
 *
 * raftpg.log holds the entries, a run of consecutive ones per row: each
 * persisted batch is packed into as few rows as fit in a heap tuple without
 * TOAST (about 2 kB), and an entry larger than that gets a row of its own.
 * Each row costs a heap insert, an index insert and their WAL records, so
 * a node that persists eight entries at once pays for one row, not eight.
 * A row is keyed by its first index and names its last; the entries are
 * packed as term, kind and length, then the payload (LOG_ENTRY_HDR).  The
 * rows are contiguous: every index from the first row's first to the last
 * row's last is in exactly one row.  raftpg.log_entries() shows them one
 * per line.
 *
 * raftpg.state holds one row with everything that must survive a crash
 * beside the entries: this node's id, the cluster's id, current term, vote,
 * where the log ends (last index and term), the commit index, the
 * snapshot's index, term and configuration, and the current configuration.
 *
 * The one rule this file exists for (DESIGN.md): a batch handed out by the
 * consensus core -- a suffix to delete, entries to add, a hard state -- is
 * written in ONE transaction, together with the state row that says where
 * the log now ends.  Everything that can reject the batch (decoding and
 * validating configuration entries) runs inside that transaction before it
 * commits.  The caller tells the core only after the commit returned, and
 * on any error aborts the transaction and tells the core the batch failed:
 * the tables, the core and shared memory then all still describe the last
 * committed state.  StorageLoad() checks on every start that the log table
 * and the state row agree, so a divergence could not go unnoticed.
 *
 * The hot path uses the table and index access methods directly: no SPI,
 * no query strings, no catalog lookups per batch (relation OIDs are
 * resolved once, at load).  Many entries go into one transaction.
 *
 * A superuser can make a persistence fail at a chosen step
 * (raftpg.inject_fault) to prove that nothing moves when it does.
 *
 * src/storage.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/detoast.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "raftpg.h"
#include "storage.h"

/* raftpg.log columns */
#define LOG_COL_FIRST	0
#define LOG_COL_LAST	1
#define LOG_COL_ENTRIES 2
#define LOG_NCOLS		3

/* an entry in a row: term (8 bytes), kind (1), payload length (4), payload */
#define LOG_ENTRY_HDR	13

/*
 * Entries go into one row while their packed size stays under this, so
 * that the heap tuple is not toasted: the row's header, its two bigints and
 * the bytea's header take the rest of TOAST_TUPLE_THRESHOLD, with room to
 * spare.
 */
#define LOG_ROW_TARGET	(TOAST_TUPLE_THRESHOLD - 64)

/*
 * A compaction transaction deletes at most this many bytes of entries: it
 * runs in the node worker's loop, and deleting a large entry deletes its
 * out-of-line chunks one by one.
 */
#define COMPACT_MAX_BYTES	(16 * 1024 * 1024)

/* raftpg.state columns */
enum
{
	ST_NODE_ID,
	ST_CLUSTER_ID,
	ST_CURRENT_TERM,
	ST_VOTED_FOR,
	ST_LAST_LOG_INDEX,
	ST_LAST_LOG_TERM,
	ST_COMMIT_INDEX,
	ST_SNAPSHOT_INDEX,
	ST_SNAPSHOT_TERM,
	ST_SNAPSHOT_CONFIG,
	ST_CONFIG_INDEX,
	ST_CONFIG,
	ST_NCOLS
};

/* relation OIDs, resolved once per worker start */
static Oid	log_relid = InvalidOid;
static Oid	log_index_relid = InvalidOid;
static Oid	state_relid = InvalidOid;

/*
 * raftpg.log must have the columns this library writes and reads: tables
 * made by another version of the extension's script are refused here,
 * rather than misread.
 */
static void
check_log_shape(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	static const Oid types[LOG_NCOLS] = {INT8OID, INT8OID, BYTEAOID};
	int			i;
	bool		ok = (desc->natts == LOG_NCOLS);

	for (i = 0; ok && i < LOG_NCOLS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		ok = !att->attisdropped && att->atttypid == types[i];
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table raftpg.log does not have the columns this raftpg library expects"),
				 errdetail("Expected (first_index bigint, last_index bigint, entries bytea)."),
				 errhint("The extension's tables were made by another version of raftpg: drop and re-create the extension.")));
}

/*
 * Resolve the tables' OIDs.  Returns false when the extension is not (yet)
 * installed in this database.
 */
bool
StorageResolve(void)
{
	Oid			nsp = get_namespace_oid("raftpg", true);
	Relation	rel;
	List	   *indexes;

	if (!OidIsValid(nsp))
		return false;
	log_relid = get_relname_relid("log", nsp);
	state_relid = get_relname_relid("state", nsp);
	if (!OidIsValid(log_relid) || !OidIsValid(state_relid))
		return false;
	rel = table_open(log_relid, AccessShareLock);
	check_log_shape(rel);
	indexes = RelationGetIndexList(rel);
	if (list_length(indexes) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table raftpg.log must have exactly one index, its primary key")));
	log_index_relid = linitial_oid(indexes);
	table_close(rel, AccessShareLock);
	return true;
}

/*
 * raftpg.origin_commits_0 and _1 and their primary keys (apply.c, "Origin
 * rows"); false if the extension is not there.
 */
bool
StorageResolveOrigin(Oid relid[2], Oid indexid[2])
{
	Oid			nsp = get_namespace_oid("raftpg", true);
	int			i;

	for (i = 0; i < 2; i++)
	{
		char		name[NAMEDATALEN];
		Relation	rel;
		List	   *indexes;

		snprintf(name, sizeof(name), "origin_commits_%d", i);
		relid[i] = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
		if (!OidIsValid(relid[i]))
			return false;
		rel = table_open(relid[i], AccessShareLock);
		indexes = RelationGetIndexList(rel);
		if (list_length(indexes) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("table raftpg.%s must have exactly one index, its primary key",
							name)));
		indexid[i] = linitial_oid(indexes);
		table_close(rel, AccessShareLock);
	}
	return true;
}

/* raftpg.log as StorageResolve() last found it */
Oid
StorageLogRelid(void)
{
	return log_relid;
}

static int64
datum_int8(Datum d, bool isnull)
{
	return isnull ? 0 : DatumGetInt64(d);
}

static bytea *
make_bytea(const void *data, Size len)
{
	bytea	   *b = (bytea *) palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	if (len > 0)
		memcpy(VARDATA(b), data, len);
	return b;
}

/*
 * Decode a stored configuration (state row or snapshot) into c, allocated
 * by the core's allocator.
 */
static void
decode_stored_config(bytea *b, raft_config *c, const char *what)
{
	int			rc;

	memset(c, 0, sizeof(*c));
	if (b == NULL)
		return;
	rc = raft_decode_config((const uint8_t *) VARDATA_ANY(b),
							VARSIZE_ANY_EXHDR(b), c);
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raftpg %s configuration does not decode: %s",
						what, raft_strerror(rc))));
}

/* read the state row; the caller is in a transaction with a snapshot */
void
StorageReadState(RaftpgStateRow *st)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	bool		found = false;

	memset(st, 0, sizeof(*st));
	rel = table_open(state_relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("table raftpg.state has more than one row")));
		found = true;
		slot_getallattrs(slot);
		st->node_id = datum_int8(slot->tts_values[ST_NODE_ID], slot->tts_isnull[ST_NODE_ID]);
		st->cluster_id = datum_int8(slot->tts_values[ST_CLUSTER_ID], slot->tts_isnull[ST_CLUSTER_ID]);
		st->hs.term = datum_int8(slot->tts_values[ST_CURRENT_TERM], slot->tts_isnull[ST_CURRENT_TERM]);
		st->hs.vote = datum_int8(slot->tts_values[ST_VOTED_FOR], slot->tts_isnull[ST_VOTED_FOR]);
		st->last_log_index = datum_int8(slot->tts_values[ST_LAST_LOG_INDEX], slot->tts_isnull[ST_LAST_LOG_INDEX]);
		st->last_log_term = datum_int8(slot->tts_values[ST_LAST_LOG_TERM], slot->tts_isnull[ST_LAST_LOG_TERM]);
		st->hs.commit = datum_int8(slot->tts_values[ST_COMMIT_INDEX], slot->tts_isnull[ST_COMMIT_INDEX]);
		st->snapshot_index = datum_int8(slot->tts_values[ST_SNAPSHOT_INDEX], slot->tts_isnull[ST_SNAPSHOT_INDEX]);
		st->snapshot_term = datum_int8(slot->tts_values[ST_SNAPSHOT_TERM], slot->tts_isnull[ST_SNAPSHOT_TERM]);
		decode_stored_config(slot->tts_isnull[ST_SNAPSHOT_CONFIG] ? NULL :
							 DatumGetByteaPP(slot->tts_values[ST_SNAPSHOT_CONFIG]),
							 &st->snapshot_config, "snapshot");
		decode_stored_config(slot->tts_isnull[ST_CONFIG] ? NULL :
							 DatumGetByteaPP(slot->tts_values[ST_CONFIG]),
							 &st->contacts, "current");
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table raftpg.state is empty"),
				 errhint("Drop and re-create the extension.")));
}

/* the row beginning at first does not hold what its columns say */
static void
log_corrupted(const char *what, uint64 first)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("raftpg log row " UINT64_FORMAT " is corrupted: %s",
					first, what)));
}

/* take the scan's current slot as the row to read from */
static void
scan_take_row(StorageLogScan *s)
{
	Datum		d;
	uint64		first;

	slot_getallattrs(s->slot);
	if (s->slot->tts_isnull[LOG_COL_FIRST] || s->slot->tts_isnull[LOG_COL_LAST] ||
		s->slot->tts_isnull[LOG_COL_ENTRIES])
		log_corrupted("it has a null column",
					  s->slot->tts_isnull[LOG_COL_FIRST] ? s->prev_last + 1 :
					  (uint64) DatumGetInt64(s->slot->tts_values[LOG_COL_FIRST]));
	first = (uint64) DatumGetInt64(s->slot->tts_values[LOG_COL_FIRST]);
	s->row_first = first;
	s->row_last = (uint64) DatumGetInt64(s->slot->tts_values[LOG_COL_LAST]);
	d = s->slot->tts_values[LOG_COL_ENTRIES];
	s->row = DatumGetByteaPP(d);
	s->row_copied = (Pointer) s->row != DatumGetPointer(d);
	s->pos = 0;
	s->next_index = first;
	if (first == 0 || s->row_last < first)
		log_corrupted("its index range is empty", first);
	if (s->prev_last != 0 && first != s->prev_last + 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raftpg log has a gap: expected index " UINT64_FORMAT ", found " UINT64_FORMAT,
						s->prev_last + 1, first)));
	s->prev_last = s->row_last;
}

static void
scan_release_row(StorageLogScan *s)
{
	if (s->row != NULL && s->row_copied)
		pfree(s->row);
	s->row = NULL;
}

/*
 * Begin reading the entries with index >= from (from 0: all of them),
 * under snap.  The caller is in a transaction.
 *
 * row_hint, if not 0, is the first index of a row that holds a committed
 * entry before from, with no committed entry missing between them: the
 * row that held the last entry a reader took (StorageLogScanRow()).  The
 * scan then starts there instead of searching for the row that holds
 * from.  Such a row stays where it is: a truncation keeps every committed
 * entry and cuts a row only after them.
 */
void
StorageLogScanBegin(StorageLogScan *s, uint64 from, uint64 row_hint,
					Snapshot snap)
{
	ScanKeyData key;
	uint64		start = from;

	memset(s, 0, sizeof(*s));
	s->from = from;
	s->rel = table_open(log_relid, AccessShareLock);
	s->idx = index_open(log_index_relid, AccessShareLock);
	s->slot = table_slot_create(s->rel, NULL);

	if (row_hint != 0 && row_hint <= from)
		start = row_hint;
	else if (from > 0)
	{
		/* the row that holds from begins at the greatest first index <= from */
		ScanKeyInit(&key, 1, BTLessEqualStrategyNumber, F_INT8LE,
					Int64GetDatum((int64) from));
		s->scan = index_beginscan(s->rel, s->idx, snap, 1, 0);
		index_rescan(s->scan, &key, 1, NULL, 0);
		if (index_getnext_slot(s->scan, BackwardScanDirection, s->slot))
		{
			bool		isnull;

			start = (uint64) DatumGetInt64(slot_getattr(s->slot, LOG_COL_FIRST + 1,
														&isnull));
		}
		index_endscan(s->scan);
	}
	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum((int64) start));
	s->scan = index_beginscan(s->rel, s->idx, snap, 1, 0);
	index_rescan(s->scan, &key, 1, NULL, 0);
}

/* the first index of the row that held the last entry returned */
uint64
StorageLogScanRow(const StorageLogScan *s)
{
	return s->row_first;
}

/*
 * The next entry of the current row, into e (its data points into the
 * row); false when the row is used up, which must be at its end.
 */
static bool
row_next_entry(StorageLogScan *s, raft_entry *e)
{
	const char *p = VARDATA_ANY(s->row);
	Size		avail = VARSIZE_ANY_EXHDR(s->row);
	uint64		term;
	uint32		len;

	if (s->next_index > s->row_last)
	{
		if (s->pos != avail)
			log_corrupted("it holds more than its index range", s->row_first);
		return false;
	}
	if (avail - s->pos < LOG_ENTRY_HDR)
		log_corrupted("an entry is cut short", s->row_first);
	memcpy(&term, p + s->pos, sizeof(term));
	memcpy(&len, p + s->pos + 9, sizeof(len));
	if (avail - s->pos - LOG_ENTRY_HDR < len)
		log_corrupted("an entry is cut short", s->row_first);
	e->index = s->next_index;
	e->term = term;
	e->type = (uint8) p[s->pos + 8];
	e->len = len;
	e->data = (uint8_t *) (p + s->pos + LOG_ENTRY_HDR);
	s->pos += LOG_ENTRY_HDR + len;
	s->next_index++;
	return true;
}

/*
 * The next entry, into e (whose data points into the row, valid until the
 * next call); false at the end of the log.
 */
bool
StorageLogScanNext(StorageLogScan *s, raft_entry *e)
{
	for (;;)
	{
		if (s->row == NULL)
		{
			if (!index_getnext_slot(s->scan, ForwardScanDirection, s->slot))
				return false;
			scan_take_row(s);
		}
		if (!row_next_entry(s, e))
		{
			scan_release_row(s);
			continue;
		}
		if (e->index >= s->from)
			return true;
	}
}

void
StorageLogScanEnd(StorageLogScan *s)
{
	scan_release_row(s);
	index_endscan(s->scan);
	ExecDropSingleTupleTableSlot(s->slot);
	index_close(s->idx, AccessShareLock);
	table_close(s->rel, AccessShareLock);
}

/*
 * Load the log after the snapshot and check it against the state row:
 * contiguous from snapshot_index + 1, ending exactly at
 * last_log_index/last_log_term.  Every entry is read and checked, but only
 * those after keep_after are copied into *entries (palloc'd in the current
 * memory context): the node's core starts from keep_after as if it had
 * compacted there, and reads older entries back when it needs them.  For
 * keep_after past the snapshot, *base_term is the term of entry keep_after
 * and *base_config the configuration in force there, with the index of its
 * entry, if a configuration entry at or before it says so (else n == 0:
 * the snapshot's is).
 */
void
StorageLoadLog(const RaftpgStateRow *st, uint64 keep_after,
			   raft_entry **entries, size_t *n,
			   raft_term *base_term, raft_config *base_config,
			   uint64 *base_config_index)
{
	StorageLogScan scan;
	raft_entry	e;
	size_t		cap = 64;
	size_t		count = 0;
	raft_entry *ents = palloc(cap * sizeof(raft_entry));
	int64		expect = st->snapshot_index + 1;
	int64		last_term = st->snapshot_term;
	char	   *cfg_data = NULL;
	uint32		cfg_len = 0;

	*base_term = 0;
	*base_config_index = 0;
	memset(base_config, 0, sizeof(*base_config));
	StorageLogScanBegin(&scan, (uint64) expect, 0, GetActiveSnapshot());
	while (StorageLogScanNext(&scan, &e))
	{
		raft_entry *c;

		if ((int64) e.index != expect)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg log has a gap: expected index " INT64_FORMAT ", found " INT64_FORMAT,
							expect, (int64) e.index)));
		expect++;
		last_term = e.term;
		if (e.index <= keep_after)
		{
			if (e.index == keep_after)
				*base_term = e.term;
			if (e.type == RAFT_ENTRY_CONFIG)
			{
				if (cfg_data)
					pfree(cfg_data);
				cfg_data = palloc(e.len > 0 ? e.len : 1);
				memcpy(cfg_data, e.data, e.len);
				cfg_len = e.len;
				*base_config_index = e.index;
			}
			continue;
		}
		if (count == cap)
		{
			cap *= 2;
			ents = repalloc_huge(ents, cap * sizeof(raft_entry));
		}
		c = &ents[count++];
		*c = e;
		c->data = palloc(e.len > 0 ? e.len : 1);
		memcpy(c->data, e.data, e.len);
	}
	StorageLogScanEnd(&scan);

	if (expect - 1 != st->last_log_index || last_term != st->last_log_term)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raftpg log and state row disagree"),
				 errdetail("The state row says the log ends at index " INT64_FORMAT " term " INT64_FORMAT
						   ", the log table ends at index " INT64_FORMAT " term " INT64_FORMAT ".",
						   st->last_log_index, st->last_log_term, expect - 1, last_term)));
	if (cfg_data != NULL)
	{
		int			rc = raft_decode_config((const uint8_t *) cfg_data,
											cfg_len, base_config);

		if (rc != RAFT_OK)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg log has a configuration entry that does not decode: %s",
							raft_strerror(rc))));
		pfree(cfg_data);
	}
	*entries = ents;
	*n = count;
}

/* the packed size of entries[0 .. n-1] */
static Size
packed_size(const raft_entry *entries, size_t n)
{
	Size		size = 0;
	size_t		i;

	for (i = 0; i < n; i++)
		size = add_size(size, LOG_ENTRY_HDR + entries[i].len);
	return size;
}

/* insert the row (first, last, entries) */
static void
log_insert_packed(Relation rel, Relation idx, IndexInfo *ii,
				  TupleTableSlot *slot, BulkInsertState bistate,
				  uint64 first, uint64 last, bytea *entries)
{
	Datum		key[INDEX_MAX_KEYS];
	bool		keynull[INDEX_MAX_KEYS];

	ExecClearTuple(slot);
	slot->tts_values[LOG_COL_FIRST] = Int64GetDatum((int64) first);
	slot->tts_values[LOG_COL_LAST] = Int64GetDatum((int64) last);
	slot->tts_values[LOG_COL_ENTRIES] = PointerGetDatum(entries);
	memset(slot->tts_isnull, 0, sizeof(bool) * LOG_NCOLS);
	ExecStoreVirtualTuple(slot);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, bistate);

	key[0] = Int64GetDatum((int64) first);
	keynull[0] = false;
	index_insert(idx, key, keynull, &slot->tts_tid, rel, UNIQUE_CHECK_YES,
				 false, ii);
}

/* insert one row holding entries[0 .. n-1] (n >= 1, consecutive) */
static void
log_insert_row(Relation rel, Relation idx, IndexInfo *ii, TupleTableSlot *slot,
			   BulkInsertState bistate, const raft_entry *entries, size_t n)
{
	Size		size = packed_size(entries, n);
	bytea	   *b;
	char	   *p;
	size_t		i;

	if (size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("raftpg log entry " UINT64_FORMAT " is too large to store",
						(uint64) entries[0].index)));
	b = (bytea *) palloc(VARHDRSZ + size);
	SET_VARSIZE(b, VARHDRSZ + size);
	p = VARDATA(b);
	for (i = 0; i < n; i++)
	{
		const raft_entry *e = &entries[i];
		uint64		term = e->term;
		uint32		len = (uint32) e->len;

		if (i > 0 && e->index != entries[i - 1].index + 1)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg_internal("raftpg log entries to store are not consecutive: " UINT64_FORMAT " after " UINT64_FORMAT,
									 (uint64) e->index, (uint64) entries[i - 1].index)));
		memcpy(p, &term, sizeof(term));
		p[8] = (char) e->type;
		memcpy(p + 9, &len, sizeof(len));
		if (len > 0)
			memcpy(p + LOG_ENTRY_HDR, e->data, len);
		p += LOG_ENTRY_HDR + len;
	}
	log_insert_packed(rel, idx, ii, slot, bistate, entries[0].index,
					  entries[n - 1].index, b);
	pfree(b);
}

/*
 * Insert entries[0 .. n-1] (consecutive): as many to a row as stay under
 * LOG_ROW_TARGET, a larger entry alone.
 */
static void
log_insert(Relation rel, Relation idx, IndexInfo *ii, TupleTableSlot *slot,
		   BulkInsertState bistate, const raft_entry *entries, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		size_t		j = i + 1;
		Size		size = LOG_ENTRY_HDR + entries[i].len;

		while (j < n && size + LOG_ENTRY_HDR + entries[j].len <= LOG_ROW_TARGET)
			size += LOG_ENTRY_HDR + entries[j++].len;
		log_insert_row(rel, idx, ii, slot, bistate, &entries[i], j - i);
		i = j;
	}
}

/*
 * Delete the entries with index >= from: the rows that begin there or
 * later, and the tail of the row that holds from, which is written again
 * with the entries before from.
 */
static void
log_truncate(Relation rel, Relation idx, uint64 from)
{
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Snapshot	snap = GetActiveSnapshot();
	bytea	   *keep = NULL;
	uint64		keep_first = 0;

	/* the row before from: does it reach into the part to delete? */
	ScanKeyInit(&key, 1, BTLessStrategyNumber, F_INT8LT,
				Int64GetDatum((int64) from));
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;
		uint64		first = (uint64) DatumGetInt64(slot_getattr(slot, LOG_COL_FIRST + 1, &isnull));
		uint64		last = (uint64) DatumGetInt64(slot_getattr(slot, LOG_COL_LAST + 1, &isnull));

		if (last >= from)
		{
			StorageLogScan rs;
			raft_entry	e;

			/*
			 * The entries before from are the row's first bytes: walk them
			 * (checking them), copy them, then delete the row.
			 */
			memset(&rs, 0, sizeof(rs));
			rs.slot = slot;
			scan_take_row(&rs);
			while (rs.next_index < from)
				(void) row_next_entry(&rs, &e);
			keep = (bytea *) palloc(VARHDRSZ + rs.pos);
			SET_VARSIZE(keep, VARHDRSZ + rs.pos);
			memcpy(VARDATA(keep), VARDATA_ANY(rs.row), rs.pos);
			keep_first = first;
			scan_release_row(&rs);
			simple_table_tuple_delete(rel, &slot->tts_tid, snap);
		}
	}
	index_endscan(scan);

	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum((int64) from));
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
		simple_table_tuple_delete(rel, &slot->tts_tid, snap);
	index_endscan(scan);

	if (keep != NULL)
	{
		CommandCounterIncrement();
		log_insert_packed(rel, idx, BuildIndexInfo(idx), slot, NULL,
						  keep_first, from - 1, keep);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * Compaction: delete the rows of raftpg.log whose entries all lie at or
 * before upto, oldest first and at most max_rows of them, and move the
 * snapshot columns of the state row to the last entry deleted, in the
 * caller's transaction.  *st_new gets the state row as written, with the
 * configuration in force at the new snapshot (a configuration entry among
 * those deleted, else the old snapshot's).  Returns the new snapshot
 * index, or 0 if no row lay wholly at or before upto; *more says whether it
 * stopped at max_rows or COMPACT_MAX_BYTES of entries.  Whole rows only:
 * a row that reaches past upto stays, and its entries at or before the
 * snapshot are skipped by every reader.
 */
uint64
StorageCompact(const RaftpgStateRow *st, uint64 upto, int max_rows,
			   RaftpgStateRow *st_new, bool *more)
{
	Relation	rel = table_open(log_relid, RowExclusiveLock);
	Relation	idx = index_open(log_index_relid, RowExclusiveLock);
	Snapshot	snap = GetActiveSnapshot();
	StorageLogScan rs;
	ScanKeyData key;
	IndexScanDesc scan;
	uint64		done = 0;
	uint64		done_term = 0;
	char	   *cfg_data = NULL;
	uint32		cfg_len = 0;
	int			rows = 0;
	Size		bytes = 0;

	*st_new = *st;
	memset(&rs, 0, sizeof(rs));
	rs.slot = table_slot_create(rel, NULL);
	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(0));
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (rows < max_rows && bytes < COMPACT_MAX_BYTES &&
		   index_getnext_slot(scan, ForwardScanDirection, rs.slot))
	{
		raft_entry	e;
		bool		isnull;
		uint64		first = (uint64) DatumGetInt64(slot_getattr(rs.slot, LOG_COL_FIRST + 1, &isnull));
		uint64		last = (uint64) DatumGetInt64(slot_getattr(rs.slot, LOG_COL_LAST + 1, &isnull));
		Datum		d = slot_getattr(rs.slot, LOG_COL_ENTRIES + 1, &isnull);

		if (last > upto)
			break;
		if (!isnull)
			bytes += toast_raw_datum_size(d);

		/*
		 * A large entry has a row of its own, stored out of line: its
		 * header says all that is needed, without reading megabytes back
		 * in the worker's loop -- unless it is a configuration.
		 */
		if (first == last && !isnull && VARATT_IS_EXTERNAL(DatumGetPointer(d)))
		{
			bytea	   *h = DatumGetByteaPSlice(d, 0, LOG_ENTRY_HDR);

			if (VARSIZE_ANY_EXHDR(h) == LOG_ENTRY_HDR &&
				(uint8) VARDATA_ANY(h)[8] != RAFT_ENTRY_CONFIG &&
				(rs.prev_last == 0 || first == rs.prev_last + 1))
			{
				memcpy(&done_term, VARDATA_ANY(h), sizeof(done_term));
				rs.prev_last = last;
				done = last;
				simple_table_tuple_delete(rel, &rs.slot->tts_tid, snap);
				rows++;
				continue;
			}
		}
		scan_take_row(&rs);
		while (row_next_entry(&rs, &e))
		{
			done_term = e.term;
			if (e.type == RAFT_ENTRY_CONFIG && e.index > (uint64) st->snapshot_index)
			{
				if (cfg_data)
					pfree(cfg_data);
				cfg_data = palloc(Max(e.len, 1));
				memcpy(cfg_data, e.data, e.len);
				cfg_len = e.len;
			}
		}
		done = rs.row_last;
		scan_release_row(&rs);
		simple_table_tuple_delete(rel, &rs.slot->tts_tid, snap);
		rows++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(rs.slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);

	*more = rows == max_rows || bytes >= COMPACT_MAX_BYTES;
	if (done <= (uint64) st->snapshot_index)
		return 0;
	st_new->snapshot_index = (int64) done;
	st_new->snapshot_term = (int64) done_term;
	if (cfg_data != NULL)
	{
		raft_config c;

		if (raft_decode_config((const uint8_t *) cfg_data, cfg_len, &c) != RAFT_OK)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg log has a configuration entry that does not decode")));
		st_new->snapshot_config = c;
	}
	StorageWriteState(st_new, NULL, 0);
	return done;
}

/*
 * A snapshot at index/term with configuration c was installed in the
 * tables (snapshot.c): the log now starts after it.  If the log holds
 * entry index with that term, the rows wholly at or before it go and the
 * rest stays; otherwise the whole log goes and ends at the snapshot.  The
 * state row moves with it, its commit index to index at least, in the
 * caller's transaction; *st_new gets it as written.
 */
void
StorageInstallSnapshot(const RaftpgStateRow *st, uint64 index, uint64 term,
					   const raft_config *c, RaftpgStateRow *st_new)
{
	Relation	rel = table_open(log_relid, RowExclusiveLock);
	Relation	idx = index_open(log_index_relid, RowExclusiveLock);
	Snapshot	snap = GetActiveSnapshot();
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData key;
	IndexScanDesc scan;
	bool		keep_suffix = false;

	*st_new = *st;
	if ((uint64) st->last_log_index >= index &&
		(uint64) st->snapshot_index < index)
	{
		StorageLogScan ls;
		raft_entry	e;

		StorageLogScanBegin(&ls, index, 0, snap);
		keep_suffix = StorageLogScanNext(&ls, &e) && e.index == index &&
			e.term == term;
		StorageLogScanEnd(&ls);
	}

	/* the rows wholly at or before index, or all of them */
	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(0));
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		uint64		last = (uint64) DatumGetInt64(slot_getattr(slot, LOG_COL_LAST + 1, &isnull));

		if (keep_suffix && last > index)
			break;
		simple_table_tuple_delete(rel, &slot->tts_tid, snap);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);

	st_new->snapshot_index = (int64) index;
	st_new->snapshot_term = (int64) term;
	st_new->snapshot_config = *c;
	if (!keep_suffix)
	{
		st_new->last_log_index = (int64) index;
		st_new->last_log_term = (int64) term;
	}
	if (st_new->hs.commit < index)
		st_new->hs.commit = index;
	StorageWriteState(st_new, keep_suffix ? NULL : c, (int64) index);
}

/* insert one entry (create_cluster's bootstrap entry) */
void
StorageAppendEntry(const raft_entry *e)
{
	Relation	rel = table_open(log_relid, RowExclusiveLock);
	Relation	idx = index_open(log_index_relid, RowExclusiveLock);
	IndexInfo  *ii = BuildIndexInfo(idx);
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	log_insert_row(rel, idx, ii, slot, NULL, e, 1);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
}

static bytea *
encode_config_bytea(const raft_config *c)
{
	size_t		size;
	size_t		len;
	bytea	   *b;
	int			rc;

	if (c == NULL || c->n == 0)
		return NULL;
	size = raft_config_encoded_size(c);
	b = (bytea *) palloc(VARHDRSZ + size);
	rc = raft_encode_config(c, (uint8_t *) VARDATA(b), size, &len);
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot encode raftpg configuration: %s", raft_strerror(rc))));
	SET_VARSIZE(b, VARHDRSZ + len);
	return b;
}

/* StoragePrunePage(): should the page be pruned below PostgreSQL's threshold? */
static bool
prune_below_threshold(Relation rel, Page page, OffsetNumber off, int versions)
{
	TransactionId prune_xid = ((PageHeader) page)->pd_prune_xid;
	ItemId		lp;
	Size		free;
	Size		need;

	if (versions <= 1 || PageIsFull(page) ||
		!TransactionIdIsValid(prune_xid) ||
		TransactionIdIsCurrentTransactionId(prune_xid) ||
		off < FirstOffsetNumber || off > PageGetMaxOffsetNumber(page))
		return false;
	lp = PageGetItemId(page, off);
	if (!ItemIdIsNormal(lp))
		return false;
	free = PageGetHeapFreeSpace(page);
	need = Min((MAXALIGN(ItemIdGetLength(lp)) + sizeof(ItemIdData)) * versions,
			   BLCKSZ / 2);
	/* below its own threshold heap_page_prune_opt() needs no hint */
	return free < need &&
		free >= (Size) Max(RelationGetTargetPageFreeSpace(rel, HEAP_DEFAULT_FILLFACTOR),
						   BLCKSZ / 10);
}

/*
 * Prune the page of the row at tid as a scan or an index fetch would, for
 * a reader that goes to the row by its TID: the dead versions updates
 * leave must go, or the next update finds no room on the page and the
 * table grows.  Before the fetch: pruning moves the tuples on the page.
 *
 * heap_page_prune_opt() prunes a page only when less than a tenth of it
 * (or the fill factor's reserve) is free, room enough for the next few
 * transactions of one version each.  A caller whose transaction may add up
 * to `versions' versions of the row -- removable only once it commits --
 * asks for a prune while the page has less room than those take: it sets
 * the hint heap_update() leaves on a page a new version did not fit on
 * (PD_PAGE_FULL), on which heap_page_prune_opt() prunes whatever the free
 * space, and which pruning clears.  Only if the page holds versions that
 * may be removable already, which none of this transaction's are.  The
 * page is read without a lock, as heap_page_prune_opt() reads it: the
 * answer is an estimate, and only decides whether to prune.
 */
void
StoragePrunePage(Relation rel, ItemPointer tid, int versions)
{
	Buffer		buf = ReadBuffer(rel, ItemPointerGetBlockNumber(tid));
	Page		page = BufferGetPage(buf);

	if (prune_below_threshold(rel, page, ItemPointerGetOffsetNumber(tid),
							  versions))
	{
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		PageSetFull(page);
		MarkBufferDirtyHint(buf, true);
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	}
	heap_page_prune_opt(rel, buf);
	ReleaseBuffer(buf);
}

/*
 * Find the row of a heap table that has exactly one (raftpg.state,
 * raftpg.apply_state) into slot, trying *hint first: the place our last
 * update of it left the row at.  Every update moves the row, and finding
 * it again by a scan costs the scan's setup and a look at each dead
 * version still on the page; the row at the hint is the one if it is
 * visible, since no other row is.  If it is not (another transaction
 * updated the row, or ours aborted), the table is scanned.  False if
 * there is no row.  The caller sets *hint to the updated row's place
 * after its update.
 */
bool
StorageFetchOnlyRow(Relation rel, ItemPointer hint, Snapshot snap,
					TupleTableSlot *slot)
{
	TableScanDesc scan;
	bool		found;

	if (ItemPointerIsValid(hint) &&
		ItemPointerGetBlockNumber(hint) < RelationGetNumberOfBlocks(rel))
	{
		StoragePrunePage(rel, hint, 1);
		if (table_tuple_fetch_row_version(rel, hint, snap, slot))
			return true;
	}
	scan = table_beginscan(rel, snap, 0, NULL);
	found = table_scan_getnextslot(scan, ForwardScanDirection, slot);
	/* the slot keeps its own pin on the row's buffer */
	table_endscan(scan);
	return found;
}

/* where StorageWriteState() last left the state row */
static ItemPointerData state_row_tid;

/*
 * Overwrite the one state row with st.  config may be NULL (unchanged
 * columns are written back as they were).
 */
void
StorageWriteState(const RaftpgStateRow *st, const raft_config *config,
				  int64 config_index)
{
	Relation	rel;
	TupleTableSlot *oldslot;
	TupleTableSlot *newslot;
	bool		update_indexes;
	Snapshot	snap = GetActiveSnapshot();
	bytea	   *snapcfg;
	bytea	   *cfg;

	rel = table_open(state_relid, RowExclusiveLock);
	oldslot = table_slot_create(rel, NULL);
	newslot = table_slot_create(rel, NULL);
	if (!StorageFetchOnlyRow(rel, &state_row_tid, snap, oldslot))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table raftpg.state is empty")));
	slot_getallattrs(oldslot);

	ExecClearTuple(newslot);
	memcpy(newslot->tts_values, oldslot->tts_values, sizeof(Datum) * ST_NCOLS);
	memcpy(newslot->tts_isnull, oldslot->tts_isnull, sizeof(bool) * ST_NCOLS);
#define SET8(col, v) (newslot->tts_values[col] = Int64GetDatum((int64) (v)), newslot->tts_isnull[col] = false)
	SET8(ST_NODE_ID, st->node_id);
	SET8(ST_CLUSTER_ID, st->cluster_id);
	SET8(ST_CURRENT_TERM, st->hs.term);
	SET8(ST_VOTED_FOR, st->hs.vote);
	SET8(ST_LAST_LOG_INDEX, st->last_log_index);
	SET8(ST_LAST_LOG_TERM, st->last_log_term);
	SET8(ST_COMMIT_INDEX, st->hs.commit);
	SET8(ST_SNAPSHOT_INDEX, st->snapshot_index);
	SET8(ST_SNAPSHOT_TERM, st->snapshot_term);
#undef SET8
	snapcfg = encode_config_bytea(&st->snapshot_config);
	newslot->tts_values[ST_SNAPSHOT_CONFIG] = PointerGetDatum(snapcfg);
	newslot->tts_isnull[ST_SNAPSHOT_CONFIG] = (snapcfg == NULL);
	if (config)
	{
		cfg = encode_config_bytea(config);
		newslot->tts_values[ST_CONFIG] = PointerGetDatum(cfg);
		newslot->tts_isnull[ST_CONFIG] = (cfg == NULL);
		newslot->tts_values[ST_CONFIG_INDEX] = Int64GetDatum(config_index);
		newslot->tts_isnull[ST_CONFIG_INDEX] = false;
	}
	ExecStoreVirtualTuple(newslot);
	simple_table_tuple_update(rel, &oldslot->tts_tid, newslot, snap,
							  &update_indexes);
	state_row_tid = newslot->tts_tid;
	ExecDropSingleTupleTableSlot(oldslot);
	ExecDropSingleTupleTableSlot(newslot);
	table_close(rel, NoLock);
}

void
StorageMaybeFail(RaftpgFaultPoint point)
{
	if (RaftpgConsumeFault(point))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("raftpg: injected failure at %s", RaftpgFaultName(point))));
}

/*
 * Persist a ready batch: one transaction, started and committed by the
 * caller.  st is the state row as last committed; it is updated in place
 * only by the caller, after the commit.
 */
void
StoragePersist(const raft_ready *rd, const RaftpgStateRow *st_old,
			   const raft_status *after, const raft_config *config,
			   RaftpgStateRow *st_new)
{
	Relation	rel;
	Relation	idx;
	size_t		i;
	bool		config_changed = false;

	*st_new = *st_old;
	if (rd->truncate_from > 0 || rd->n_entries > 0)
	{
		rel = table_open(log_relid, RowExclusiveLock);
		idx = index_open(log_index_relid, RowExclusiveLock);
		if (rd->truncate_from > 0)
		{
			log_truncate(rel, idx, rd->truncate_from);
			CommandCounterIncrement();
			config_changed = true;
		}
		if (rd->n_entries > 0)
		{
			IndexInfo  *ii = BuildIndexInfo(idx);
			TupleTableSlot *slot = table_slot_create(rel, NULL);
			BulkInsertState bistate = packed_size(rd->entries, rd->n_entries) > 16 * LOG_ROW_TARGET ?
				GetBulkInsertState() : NULL;

			log_insert(rel, idx, ii, slot, bistate, rd->entries, rd->n_entries);
			if (bistate)
				FreeBulkInsertState(bistate);
			ExecDropSingleTupleTableSlot(slot);
		}
		index_close(idx, NoLock);
		table_close(rel, NoLock);
		StorageMaybeFail(RAFTPG_FAULT_AFTER_ENTRIES);

		/*
		 * Configuration entries: decode and validate them here, inside the
		 * transaction, so that one that does not decode aborts the whole
		 * batch.  (The core validated them already; this is the storage's
		 * own check of what it is about to commit.)
		 */
		for (i = 0; i < rd->n_entries; i++)
		{
			const raft_entry *e = &rd->entries[i];
			raft_config c;
			int			rc;

			if (e->type != RAFT_ENTRY_CONFIG)
				continue;
			config_changed = true;
			StorageMaybeFail(RAFTPG_FAULT_CONFIG);
			rc = raft_decode_config(e->data, e->len, &c);
			if (rc != RAFT_OK)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("raftpg log entry " UINT64_FORMAT " holds an invalid configuration: %s",
								(uint64) e->index, raft_strerror(rc))));
			raft_config_free(&c);
		}
	}

	if (rd->hard_state_changed)
		st_new->hs = rd->hard_state;
	st_new->last_log_index = (int64) after->last_index;
	st_new->last_log_term = (int64) after->last_term;
	StorageWriteState(st_new, config_changed ? config : NULL,
					  (int64) after->config_index);
	StorageMaybeFail(RAFTPG_FAULT_AFTER_STATE);
	StorageMaybeFail(RAFTPG_FAULT_BEFORE_COMMIT);
}

/*
 * raftpg.log_entries(): the log, one entry per row, as this node has it.
 */
PG_FUNCTION_INFO_V1(raftpg_log_entries);
Datum
raftpg_log_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StorageLogScan scan;
	raft_entry	e;

	InitMaterializedSRF(fcinfo, 0);
	if (!StorageResolve())
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the raftpg log table is missing in this database"),
				 errhint("Create the extension with CREATE EXTENSION raftpg.")));
	StorageLogScanBegin(&scan, 0, 0, GetActiveSnapshot());
	while (StorageLogScanNext(&scan, &e))
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int64GetDatum((int64) e.index);
		values[1] = Int64GetDatum((int64) e.term);
		values[2] = Int16GetDatum((int16) e.type);
		values[3] = PointerGetDatum(make_bytea(e.data, e.len));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pfree(DatumGetPointer(values[3]));
	}
	StorageLogScanEnd(&scan);
	return (Datum) 0;
}
