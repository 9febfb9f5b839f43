/*-------------------------------------------------------------------------
 *
 * storage.h
 *	  The Raft log and hard state in tables (see storage.c).
 *
 * src/storage.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_STORAGE_H
#define RAFTPG_STORAGE_H

#include "access/genam.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

#include "raft.h"
#include "raftpg.h"

/* raftpg.state, as committed */
typedef struct RaftpgStateRow
{
	int64		node_id;
	int64		cluster_id;
	raft_hard_state hs;
	int64		last_log_index;
	int64		last_log_term;
	int64		snapshot_index;
	int64		snapshot_term;
	raft_config snapshot_config;	/* allocated by the core's allocator */

	/*
	 * The configuration column, read at load: for a node that has just
	 * joined and has no log yet, the members it can answer to (written by
	 * prepare_join); afterwards the current configuration, for display.
	 */
	raft_config contacts;
} RaftpgStateRow;

/*
 * Reading entries back from raftpg.log in index order, from a given index
 * on (StorageLogScanBegin/Next/End).  An entry handed out points into the
 * scan's current row: it stays valid until the next call.
 */
typedef struct StorageLogScan
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	uint64		from;			/* the first index wanted */
	uint64		prev_last;		/* last index of the row before; 0 = none */
	bytea	   *row;			/* the current row's entries */
	bool		row_copied;		/* row was detoasted into a copy of ours */
	Size		pos;			/* where the next entry starts in row */
	uint64		next_index;		/* that entry's index */
	uint64		row_first;		/* the row's first index */
	uint64		row_last;		/* and its last */
} StorageLogScan;

extern bool StorageResolve(void);
extern Oid StorageLogRelid(void);
extern bool StorageResolveOrigin(Oid relid[2], Oid indexid[2]);
extern void StorageLogScanBegin(StorageLogScan *s, uint64 from, uint64 row_hint,
								Snapshot snap);
extern uint64 StorageLogScanRow(const StorageLogScan *s);
extern bool StorageLogScanNext(StorageLogScan *s, raft_entry *e);
extern void StorageLogScanEnd(StorageLogScan *s);
extern void StorageReadState(RaftpgStateRow *st);
extern void StoragePrunePage(Relation rel, ItemPointer tid, int versions);
extern bool StorageFetchOnlyRow(Relation rel, ItemPointer hint, Snapshot snap,
								TupleTableSlot *slot);
extern void StorageLoadLog(const RaftpgStateRow *st, uint64 keep_after,
						   raft_entry **entries, size_t *n,
						   raft_term *base_term, raft_config *base_config,
						   uint64 *base_config_index);
extern void StorageWriteState(const RaftpgStateRow *st,
							  const raft_config *config, int64 config_index);
extern void StoragePersist(const raft_ready *rd, const RaftpgStateRow *st_old,
						   const raft_status *after, const raft_config *config,
						   RaftpgStateRow *st_new);
extern void StorageAppendEntry(const raft_entry *e);
extern uint64 StorageCompact(const RaftpgStateRow *st, uint64 upto, int max_rows,
							 RaftpgStateRow *st_new, bool *more);
extern void StorageInstallSnapshot(const RaftpgStateRow *st, uint64 index,
								   uint64 term, const raft_config *c,
								   RaftpgStateRow *st_new);
extern void StorageMaybeFail(RaftpgFaultPoint point);

#endif							/* RAFTPG_STORAGE_H */
