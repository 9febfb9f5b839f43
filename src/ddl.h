/*-------------------------------------------------------------------------
 *
 * ddl.h
 *	  DDL on replicated tables, replicated in log order (see ddl.c).
 *
 * src/ddl.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_DDL_H
#define RAFTPG_DDL_H

#include "changes.h"

/* install the utility and object access hooks; from _PG_init */
extern void DdlInit(void);

/* the apply worker: apply one 'S' record (changes.h) */
extern void DdlApply(RaftpgReader *r);

/*
 * raftpg's own statements on a table it is putting under Raft or taking
 * out (the raftpg_* triggers of replicate.c) pass the hooks untouched
 * between these two calls; the end of the transaction ends it too.
 */
extern void DdlBeginInternal(void);
extern void DdlEndInternal(void);

#endif							/* RAFTPG_DDL_H */
