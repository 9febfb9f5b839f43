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

/* values of raftpg.read_consistency */
typedef enum RaftpgReadConsistency
{
	RAFTPG_READ_LOCAL = 0,		/* read this node's tables as they are */
	RAFTPG_READ_LINEARIZABLE	/* see every write acknowledged before */
} RaftpgReadConsistency;

extern int	raftpg_read_consistency;

/* raftpg.read_consistency and the hooks; from _PG_init */
extern void ReadsInit(void);

#endif							/* RAFTPG_READS_H */
