/*-------------------------------------------------------------------------
 *
 * replicate.h
 *	  Putting tables under Raft and taking them out (see replicate.c).
 *
 * src/replicate.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_REPLICATE_H
#define RAFTPG_REPLICATE_H

#include "changes.h"

extern void ReplicateApplyAddTable(RaftpgReader *r, uint64 index,
								   bool origin_here);
extern void ReplicateApplyUnreplicate(RaftpgReader *r);
extern void ReplicateSnapshotCheck(Oid relid, bool same);
extern void ReplicateSnapshotInstall(Oid relid, uint64 added_index);
extern void ReplicateSnapshotUninstall(Oid relid);

#endif							/* RAFTPG_REPLICATE_H */
