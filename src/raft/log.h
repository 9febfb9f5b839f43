/*-------------------------------------------------------------------------
 *
 * log.h
 *	  The consensus core's in-memory view of the Raft log.
 *
 * The view has two layers.  The durable layer holds what the host has
 * reported persisted: the entries after the snapshot, contiguous.  The
 * overlay holds what the core has decided but the host has not yet made
 * durable: it starts at ov_from and replaces every durable entry from that
 * index on.  Reading the log reads through the overlay.  raft_advance()
 * merges the overlay into the durable layer; raft_persist_failed() throws
 * it away, and the view is again exactly what the host has on disk.
 *
 * That split is how the core keeps the project's invariant: nothing it
 * counts as durable -- its own match index, the entries it applies -- comes
 * from the overlay.
 *
 * Invariants: snap_index < ov_from <= durable last + 1 when an overlay
 * exists (ov_from != 0); entry i of either layer has index i.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFT_LOG_H
#define RAFT_LOG_H

#include "raft.h"

typedef struct raft_log
{
	raft_index	snap_index;
	raft_term	snap_term;

	raft_entry *ents;			/* durable: snap_index + 1 ... */
	size_t		n;
	size_t		cap;

	raft_index	ov_from;		/* 0: no overlay */
	raft_entry *ov;
	size_t		ov_n;
	size_t		ov_cap;
} raft_log;

extern void log_init(raft_log *l, raft_index snap_index, raft_term snap_term);
extern void log_free(raft_log *l);

/* load durable entries at startup (copies data) */
extern int	log_restore(raft_log *l, const raft_entry *ents, size_t n);

extern raft_index log_first_index(const raft_log *l);
extern raft_index log_last_index(const raft_log *l);
extern raft_term log_last_term(const raft_log *l);
/* last index of the view that is durable */
extern raft_index log_stable_index(const raft_log *l);

/*
 * Term of entry i: RAFT_OK (term 0 for i == 0), RAFT_ECOMPACTED when i is
 * before the snapshot, RAFT_ENOTFOUND when after the last entry.
 */
extern int	log_term(const raft_log *l, raft_index i, raft_term *t);
/* term of entry i, or 0 when it is not in the view */
extern raft_term log_term_or_zero(const raft_log *l, raft_index i);
/* entry i, NULL when compacted or missing (the snapshot index too) */
extern const raft_entry *log_get(const raft_log *l, raft_index i);

/*
 * Replace the view from index "from" on with ents[0..n), copying their
 * data; from <= last + 1 and from > snap_index.  ents[k].index is set to
 * from + k.  On RAFT_ENOMEM nothing changed.
 */
extern int	log_replace(raft_log *l, raft_index from, const raft_entry *ents,
						size_t n);
/* append entries whose data the log takes over (on success only) */
extern int	log_append_owned(raft_log *l, raft_entry *ents, size_t n);

extern bool log_has_overlay(const raft_log *l);
/* the host persisted the overlay */
extern void log_stabilize(raft_log *l);
/* the host failed to persist it */
extern void log_discard_overlay(raft_log *l);

/* drop durable entries up to index (<= stable index) */
extern void log_compact(raft_log *l, raft_index index, raft_term term);

/*
 * Install a snapshot: if the view has entry index with term, keep what
 * follows; otherwise empty the log.  Requires no overlay.
 */
extern void log_install_snapshot(raft_log *l, raft_index index, raft_term term);

#endif							/* RAFT_LOG_H */
