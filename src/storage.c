/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  The Raft log and hard state, kept in two tables.
 *
 * raftpg.log holds one row per log entry; raftpg.state holds one row with
 * everything that must survive a crash beside the entries: this node's id,
 * the cluster's id, current term, vote, where the log ends (last index and
 * term), the commit index, the snapshot's index, term and configuration,
 * and the current configuration.
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
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "raftpg.h"
#include "storage.h"

/* raftpg.log columns */
#define LOG_COL_INDEX	0
#define LOG_COL_TERM	1
#define LOG_COL_KIND	2
#define LOG_COL_PAYLOAD 3
#define LOG_NCOLS		4

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
	indexes = RelationGetIndexList(rel);
	if (list_length(indexes) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table raftpg.log must have exactly one index, its primary key")));
	log_index_relid = linitial_oid(indexes);
	table_close(rel, AccessShareLock);
	return true;
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

/*
 * Load the log after the snapshot into entries (palloc'd in the current
 * memory context) and check it against the state row: contiguous from
 * snapshot_index + 1, ending exactly at last_log_index/last_log_term.
 */
void
StorageLoadLog(const RaftpgStateRow *st, raft_entry **entries, size_t *n)
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot;
	size_t		cap = 64;
	size_t		count = 0;
	raft_entry *ents = palloc(cap * sizeof(raft_entry));
	int64		expect = st->snapshot_index + 1;
	int64		last_term = st->snapshot_term;

	rel = table_open(log_relid, AccessShareLock);
	idx = index_open(log_index_relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE,
				Int64GetDatum(st->snapshot_index + 1));
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		raft_entry *e;
		bytea	   *payload;

		slot_getallattrs(slot);
		if (count == cap)
		{
			cap *= 2;
			ents = repalloc_huge(ents, cap * sizeof(raft_entry));
		}
		e = &ents[count++];
		e->index = DatumGetInt64(slot->tts_values[LOG_COL_INDEX]);
		e->term = DatumGetInt64(slot->tts_values[LOG_COL_TERM]);
		e->type = (uint8) DatumGetInt16(slot->tts_values[LOG_COL_KIND]);
		payload = DatumGetByteaPP(slot->tts_values[LOG_COL_PAYLOAD]);
		e->len = VARSIZE_ANY_EXHDR(payload);
		e->data = palloc(e->len > 0 ? e->len : 1);
		memcpy(e->data, VARDATA_ANY(payload), e->len);
		if ((int64) e->index != expect)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg log has a gap: expected index " INT64_FORMAT ", found " INT64_FORMAT,
							expect, (int64) e->index)));
		expect++;
		last_term = e->term;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);

	if (expect - 1 != st->last_log_index || last_term != st->last_log_term)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raftpg log and state row disagree"),
				 errdetail("The state row says the log ends at index " INT64_FORMAT " term " INT64_FORMAT
						   ", the log table ends at index " INT64_FORMAT " term " INT64_FORMAT ".",
						   st->last_log_index, st->last_log_term, expect - 1, last_term)));
	*entries = ents;
	*n = count;
}

/* delete log rows with index >= from (from > 0) or <= upto (from == 0) */
static void
log_delete(Relation rel, Relation idx, int64 from, int64 upto)
{
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Snapshot	snap = GetActiveSnapshot();

	if (from > 0)
		ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(from));
	else
		ScanKeyInit(&key, 1, BTLessEqualStrategyNumber, F_INT8LE,
					Int64GetDatum(upto));
	scan = index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
		simple_table_tuple_delete(rel, &slot->tts_tid, snap);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
}

static void
log_insert(Relation rel, Relation idx, IndexInfo *ii, TupleTableSlot *slot,
		   BulkInsertState bistate, const raft_entry *e)
{
	Datum		key[INDEX_MAX_KEYS];
	bool		keynull[INDEX_MAX_KEYS];

	ExecClearTuple(slot);
	slot->tts_values[LOG_COL_INDEX] = Int64GetDatum((int64) e->index);
	slot->tts_values[LOG_COL_TERM] = Int64GetDatum((int64) e->term);
	slot->tts_values[LOG_COL_KIND] = Int16GetDatum((int16) e->type);
	slot->tts_values[LOG_COL_PAYLOAD] = PointerGetDatum(make_bytea(e->data, e->len));
	memset(slot->tts_isnull, 0, sizeof(bool) * LOG_NCOLS);
	ExecStoreVirtualTuple(slot);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, bistate);

	key[0] = Int64GetDatum((int64) e->index);
	keynull[0] = false;
	index_insert(idx, key, keynull, &slot->tts_tid, rel, UNIQUE_CHECK_YES,
				 false, ii);
}

/* insert one entry (create_cluster's bootstrap entry) */
void
StorageAppendEntry(const raft_entry *e)
{
	Relation	rel = table_open(log_relid, RowExclusiveLock);
	Relation	idx = index_open(log_index_relid, RowExclusiveLock);
	IndexInfo  *ii = BuildIndexInfo(idx);
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	log_insert(rel, idx, ii, slot, NULL, e);
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

/*
 * Overwrite the one state row with st.  config may be NULL (unchanged
 * columns are written back as they were).
 */
void
StorageWriteState(const RaftpgStateRow *st, const raft_config *config,
				  int64 config_index)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *oldslot;
	TupleTableSlot *newslot;
	bool		update_indexes;
	Snapshot	snap = GetActiveSnapshot();
	bytea	   *snapcfg;
	bytea	   *cfg;

	rel = table_open(state_relid, RowExclusiveLock);
	oldslot = table_slot_create(rel, NULL);
	newslot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snap, 0, NULL);
	if (!table_scan_getnextslot(scan, ForwardScanDirection, oldslot))
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
	table_endscan(scan);
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
			log_delete(rel, idx, (int64) rd->truncate_from, 0);
			CommandCounterIncrement();
			config_changed = true;
		}
		if (rd->n_entries > 0)
		{
			IndexInfo  *ii = BuildIndexInfo(idx);
			TupleTableSlot *slot = table_slot_create(rel, NULL);
			BulkInsertState bistate = rd->n_entries > 16 ? GetBulkInsertState() : NULL;

			for (i = 0; i < rd->n_entries; i++)
				log_insert(rel, idx, ii, slot, bistate, &rd->entries[i]);
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
