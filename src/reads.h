/*-------------------------------------------------------------------------
 *
 * reads.h
 *	  Linearizable reads of replicated tables (see reads.c).
 *
 * src/reads.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_READS_H
#define RAFTPG_READS_H

/* raftpg.read_consistency and the executor hook; from _PG_init */
extern void ReadsInit(void);

#endif							/* RAFTPG_READS_H */
