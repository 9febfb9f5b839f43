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

/* install the utility hook; from _PG_init, in every backend */
extern void DdlInit(void);
/* the apply worker: apply one 'S' record (changes.h) */
extern void DdlApply(RaftpgReader *r);

#endif							/* RAFTPG_DDL_H */
