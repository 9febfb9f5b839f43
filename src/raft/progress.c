/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  The leader's view of each peer: match and next index, the
 *	  probe/replicate/snapshot state, and the window of APPENDs in flight.
 *
 * Dissertation 3.5 keeps nextIndex and matchIndex per follower.  The state
 * machine on top is etcd's: a peer in PROBE gets one APPEND at a time until
 * it answers, then moves to REPLICATE, where up to max_inflight APPENDs
 * stream without waiting (pipelining, 10.2.2); a refusal drops it back to
 * PROBE; a peer whose next entry was compacted away is in SNAPSHOT until it
 * reports the snapshot installed.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"
#include "config.h"

void
progress_free_all(raft *r)
{
	size_t		i;

	for (i = 0; i < r->n_prs; i++)
		raft_free(r->prs[i].inflight);
	raft_free(r->prs);
	r->prs = NULL;
	r->n_prs = 0;
}

raft_progress *
progress_get(raft *r, raft_id id)
{
	size_t		i;

	for (i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

void
progress_reset(raft *r, raft_progress *pr)
{
	pr->match = 0;
	pr->next = log_last_index(&r->log) + 1;
	pr->state = RAFT_PROGRESS_PROBE;
	pr->probe_sent = false;
	pr->recent_active = false;
	pr->pending_snapshot = 0;
	pr->snapshot_ticks = 0;
	pr->ticks_since_contact = 0;
	pr->read_ack = 0;
	pr->in_start = 0;
	pr->in_count = 0;
}

/* is ring the inflight ring of one of r's progress entries? */
bool
progress_owns_ring(const raft *r, const raft_index *ring)
{
	size_t		i;

	for (i = 0; i < r->n_prs; i++)
		if (r->prs[i].inflight == ring)
			return true;
	return false;
}

/*
 * Build the progress array for configuration c (and a retiring server not
 * in it) without changing r: members that stay keep what is known of them
 * (their entries are copied, their inflight rings shared until
 * progress_install), new ones start afresh -- and so does a server added
 * back while it was still being told of its removal (it may have lost its
 * log meanwhile, and an old match index would make the leader take its
 * refusals for stale ones).  On RAFT_ENOMEM nothing changed.
 */
int
progress_prepare(raft *r, const raft_config *c, raft_id retiring,
				 raft_progress **out, size_t *out_n)
{
	raft_progress *nprs;
	size_t		n = 0;
	uint32_t	i;
	size_t		k;

	nprs = raft_calloc(c->n + 1, sizeof(raft_progress));
	if (nprs == NULL)
		return RAFT_ENOMEM;
	for (i = 0; i <= c->n; i++)
	{
		raft_id		id;
		raft_progress *old;

		/* the members, then a retiring server not among them */
		if (i < c->n)
			id = c->servers[i].id;
		else if (retiring != 0 && raft_config_index_of(c, retiring) < 0)
			id = retiring;
		else
			break;
		if (id == r->id)
			continue;
		old = progress_get(r, id);
		if (old && i < c->n && c != &r->config &&
			raft_config_index_of(&r->config, id) < 0)
			old = NULL;			/* added back while it retired */
		if (old)
			nprs[n] = *old;
		else
		{
			nprs[n].id = id;
			nprs[n].in_cap = r->opts.max_inflight;
			nprs[n].inflight = raft_calloc(nprs[n].in_cap, sizeof(raft_index));
			if (nprs[n].inflight == NULL)
			{
				for (k = 0; k < n; k++)
					if (!progress_owns_ring(r, nprs[k].inflight))
						raft_free(nprs[k].inflight);
				raft_free(nprs);
				return RAFT_ENOMEM;
			}
			progress_reset(r, &nprs[n]);
		}
		n++;
	}
	*out = nprs;
	*out_n = n;
	return RAFT_OK;
}

/* make an array from progress_prepare r's; cannot fail */
void
progress_install(raft *r, raft_progress *nprs, size_t n)
{
	size_t		i,
				k;

	for (i = 0; i < r->n_prs; i++)
	{
		bool		kept = false;

		for (k = 0; k < n; k++)
			if (nprs[k].inflight == r->prs[i].inflight)
				kept = true;
		if (!kept)
			raft_free(r->prs[i].inflight);
	}
	raft_free(r->prs);
	r->prs = nprs;
	r->n_prs = n;
}

/* one entry per member of the configuration (and the retiring server) */
int
progress_rebuild(raft *r)
{
	raft_progress *nprs;
	size_t		n;
	int			rc;

	rc = progress_prepare(r, &r->config, r->retiring, &nprs, &n);
	if (rc == RAFT_OK)
		progress_install(r, nprs, n);
	return rc;
}

void
progress_become_probe(raft_progress *pr)
{
	/* a peer coming back from SNAPSHOT resumes after the snapshot */
	if (pr->state == RAFT_PROGRESS_SNAPSHOT)
		pr->next = RAFT_MAX(pr->match + 1, pr->pending_snapshot + 1);
	else
		pr->next = pr->match + 1;
	pr->state = RAFT_PROGRESS_PROBE;
	pr->probe_sent = false;
	pr->pending_snapshot = 0;
	pr->in_start = 0;
	pr->in_count = 0;
}

void
progress_become_replicate(raft_progress *pr)
{
	pr->state = RAFT_PROGRESS_REPLICATE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	pr->pending_snapshot = 0;
	pr->in_start = 0;
	pr->in_count = 0;
}

void
progress_become_snapshot(raft_progress *pr, raft_index index)
{
	pr->state = RAFT_PROGRESS_SNAPSHOT;
	pr->pending_snapshot = index;
	pr->snapshot_ticks = 0;
	pr->probe_sent = false;
	pr->in_start = 0;
	pr->in_count = 0;
}

bool
progress_inflight_full(const raft *r, const raft_progress *pr)
{
	(void) r;
	return pr->in_count >= pr->in_cap;
}

bool
progress_is_paused(const raft *r, const raft_progress *pr)
{
	switch (pr->state)
	{
		case RAFT_PROGRESS_PROBE:
			return pr->probe_sent;
		case RAFT_PROGRESS_REPLICATE:
			return progress_inflight_full(r, pr);
		case RAFT_PROGRESS_SNAPSHOT:
			return true;
	}
	return true;
}

/* a successful APPEND_RESP: true when it told us something new */
bool
progress_maybe_update(raft_progress *pr, raft_index index)
{
	bool		updated = false;

	if (index > pr->match)
	{
		pr->match = index;
		pr->probe_sent = false;
		updated = true;
	}
	pr->next = RAFT_MAX(pr->next, index + 1);
	return updated;
}

/*
 * A refused APPEND (m->index is its prev index).  Returns false for a stale
 * refusal.  Otherwise lowers next using the follower's hint (the fast
 * back-off of 5.3 in the Raft paper): skip the whole conflicting term at
 * once instead of one entry per round trip.
 */
bool
progress_maybe_decr(raft *r, raft_progress *pr, const raft_message *m)
{
	raft_index	rejected = m->index;
	raft_index	next;

	if (pr->state == RAFT_PROGRESS_REPLICATE)
	{
		/*
		 * A refusal at the match index itself is not stale: it is how a
		 * follower whose host failed to persist an APPEND says so.
		 */
		if (rejected < pr->match)
			return false;
		progress_become_probe(pr);
		return true;
	}
	if (pr->next == 0 || rejected != pr->next - 1)
		return false;

	next = m->hint_index;
	if (m->hint_term != 0)
	{
		/* our last entry of the follower's conflicting term, if any */
		raft_index	j = RAFT_MIN(rejected, log_last_index(&r->log));
		raft_term	t;

		while (j > r->log.snap_index &&
			   log_term(&r->log, j, &t) == RAFT_OK && t > m->hint_term)
			j--;
		if (j > r->log.snap_index &&
			log_term(&r->log, j, &t) == RAFT_OK && t == m->hint_term)
			next = j + 1;
	}
	next = RAFT_MIN(next, rejected);
	next = RAFT_MAX(next, pr->match + 1);
	pr->next = RAFT_MAX(next, 1);
	pr->probe_sent = false;
	return true;
}

void
progress_inflight_add(raft_progress *pr, raft_index last)
{
	RAFT_ASSERT(pr->in_count < pr->in_cap);
	pr->inflight[(pr->in_start + pr->in_count) % pr->in_cap] = last;
	pr->in_count++;
}

/* the follower has everything up to index: free the APPENDs that carried it */
void
progress_inflight_free_to(raft_progress *pr, raft_index index)
{
	while (pr->in_count > 0 && pr->inflight[pr->in_start] <= index)
	{
		pr->in_start = (pr->in_start + 1) % pr->in_cap;
		pr->in_count--;
	}
}

void
progress_inflight_free_first(raft_progress *pr)
{
	if (pr->in_count == 0)
		return;
	pr->in_start = (pr->in_start + 1) % pr->in_cap;
	pr->in_count--;
}
