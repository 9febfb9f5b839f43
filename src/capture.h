/*-------------------------------------------------------------------------
 *
 * capture.h
 *	  Changes of replicated tables on the leader, and their commit through
 *	  Raft (see capture.c).
 *
 * src/capture.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_CAPTURE_H
#define RAFTPG_CAPTURE_H

#include "access/htup.h"
#include "utils/relcache.h"

#include "raftpg.h"

extern int	raftpg_max_entry_size;

extern void CaptureInit(void);
extern uint64 CaptureLastWriteIndex(void);
extern void CaptureAppendRecord(char tag, const char *body, int len);
extern void CaptureInsertRow(Relation rel, HeapTuple tuple);
extern uint64 CaptureCommitNow(void);
extern bool CaptureHasProposed(void);
extern void CaptureSetSlot(RaftpgSlotState state, TransactionId xid);
extern void CaptureRefuseNotLeader(const char *relname) pg_attribute_noreturn();

#endif							/* RAFTPG_CAPTURE_H */
