/*-------------------------------------------------------------------------
 *
 * snapshot.h
 *	  Copying a snapshot of the replicated tables from another node (see
 *	  snapshot.c).
 *
 * src/snapshot.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_SNAPSHOT_H
#define RAFTPG_SNAPSHOT_H

#include "nodes/pg_list.h"

/* what SnapshotCopy() installed */
typedef struct SnapshotResult
{
	uint64		index;			/* the source's applied index and term */
	uint64		term;
	bytea	   *config;			/* the configuration in force there */
	uint64		import_node;	/* the source, and its commit index */
	uint64		import_until;
	int			tables;			/* tables copied, and their rows */
	uint64		rows;
	int			origin_rows;	/* transactions of the source in the copy
								 * whose entries are not applied there */
	List	   *dropped;		/* relids no longer replicated here */
} SnapshotResult;

extern void SnapshotCopy(const char *name, const char *conninfo,
						 uint64 min_index, SnapshotResult *res);

#endif							/* RAFTPG_SNAPSHOT_H */
