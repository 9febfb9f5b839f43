/*-------------------------------------------------------------------------
 *
 * sequences.h
 *	  Sequences of replicated tables (see sequences.c).
 *
 * src/sequences.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_SEQUENCES_H
#define RAFTPG_SEQUENCES_H

#include "changes.h"

extern int	raftpg_sequence_reserve;

extern void SequencesReplicateTable(Oid relid);
extern void SequencesFenceNew(Oid relid);
extern void SequencesUnreplicate(Oid relid);
extern void SequencesApply(RaftpgReader *r, bool origin_here);
extern void SequencesTick(uint64 applied);
extern char *SequencesOwnedQuery(Oid relid);
extern void SequencesSnapshotFence(const char *nspname, const char *relname,
								   int64 upto);

#endif							/* RAFTPG_SEQUENCES_H */
