/*-------------------------------------------------------------------------
 *
 * membership.c
 *	  Configuration changes, one server at a time (dissertation 4.1-4.3).
 *
 * A configuration is a log entry and takes effect on each server as soon
 * as it is appended, committed or not; a truncation that removes it brings
 * back the one before.  The current configuration is therefore always the
 * last configuration entry of the log view, or the snapshot's when the log
 * has none: membership_config_at() computes exactly that, before any change
 * to the log is made, and membership_install() puts it in force without
 * allocating, so that nothing can fail between changing the log and
 * changing the configuration.
 *
 * A leader proposes a change only when the previous one is committed (one
 * change in flight) and an entry of its own term is committed (the
 * correction to 4.1 published with the dissertation: otherwise two leaders
 * of successive terms could each commit a change based on a different
 * configuration).  A new server joins as a learner and is promoted once it
 * caught up, so it cannot stall commits while it copies the log (4.2.1).
 * A leader that removed itself keeps leading until the change commits,
 * then steps down (4.2.2) -- handing over to the most up-to-date voter at
 * once rather than waiting for an election timeout.
 *
 * Every configuration entry is decoded and validated before it enters the
 * log, on the leader and on followers: the class of bug this project was
 * born from.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"
#include "config.h"

/* the configuration entries among ents all decode into valid configurations */
int
membership_check_entries(const raft_entry *ents, size_t n)
{
	size_t		i;
	raft_config c;
	int			rc;

	for (i = 0; i < n; i++)
	{
		if (ents[i].type != RAFT_ENTRY_CONFIG)
			continue;
		rc = raft_decode_config(ents[i].data, ents[i].len, &c);
		if (rc != RAFT_OK)
			return rc;
		raft_config_free(&c);
	}
	return RAFT_OK;
}

/*
 * The configuration in force at index upto of the log view: the last
 * configuration entry at or before it, else the snapshot's.  Allocates
 * (decodes or copies) into *out; nothing else changes.
 */
int
membership_config_at(raft *r, raft_index upto, raft_config *out,
					 raft_index *out_index)
{
	raft_index	i;
	const raft_entry *e = NULL;

	memset(out, 0, sizeof(*out));
	for (i = RAFT_MIN(upto, log_last_index(&r->log)); i > r->log.snap_index; i--)
	{
		e = log_get(&r->log, i);
		if (e->type == RAFT_ENTRY_CONFIG)
		{
			*out_index = i;
			return raft_decode_config(e->data, e->len, out);
		}
	}
	*out_index = r->snap_config.n > 0 ? r->snap_config_index : 0;
	return raft_config_copy(&r->snap_config, out);
}

/*
 * Make c (taken over) the configuration in force, from entry index.  The
 * configuration it replaces is kept until the host has persisted the log
 * that changed it (membership_stabilized), so that a failed persistence can
 * put it back without allocating (membership_revert).  A leader passes
 * the progress array it prepared for c; cannot fail.
 */
void
membership_install(raft *r, raft_config *c, raft_index index,
				   raft_progress *nprs, size_t n_prs)
{
	if (!r->has_saved_config)
	{
		r->saved_config = r->config;
		r->saved_config_index = r->config_index;
		r->has_saved_config = true;
	}
	else
		raft_config_free(&r->config);
	r->config = *c;
	r->config_index = index;
	memset(c, 0, sizeof(*c));
	memset(r->votes, 0, sizeof(r->votes));
	if (nprs != NULL)
		progress_install(r, nprs, n_prs);
	else if (r->role == RAFT_LEADER && progress_rebuild(r) != RAFT_OK)
		become_follower(r, r->term, 0);
}

/* the host persisted the log: the saved configuration is history */
void
membership_stabilized(raft *r)
{
	if (r->has_saved_config)
	{
		raft_config_free(&r->saved_config);
		r->has_saved_config = false;
	}
}

/* the host failed to persist: the durable log's configuration is back */
void
membership_revert(raft *r)
{
	if (!r->has_saved_config)
		return;
	raft_config_free(&r->config);
	r->config = r->saved_config;
	r->config_index = r->saved_config_index;
	memset(&r->saved_config, 0, sizeof(r->saved_config));
	r->has_saved_config = false;
	memset(r->votes, 0, sizeof(r->votes));
	if (r->role == RAFT_LEADER && progress_rebuild(r) != RAFT_OK)
		become_follower(r, r->term, 0);
}

/*
 * The retiring server holds the configuration that removed it, it has been
 * sent a commit index that covers it, and it answered a heartbeat since:
 * stop replicating to it.  (Should that message have been lost, it keeps
 * campaigning harmlessly: PreVote and the leader lease ignore it.)
 */
void
membership_retire_done(raft *r, raft_progress *pr)
{
	if (pr->id != r->retiring || r->config_index > r->commit ||
		pr->match < r->config_index || pr->commit_sent < r->config_index)
		return;
	r->retiring = 0;
	if (progress_rebuild(r) != RAFT_OK)
		r->retiring = pr->id;	/* keep it; try again on its next answer */
}

/* a leader no longer in the configuration, once that is committed */
bool
membership_leader_removed(raft *r)
{
	size_t		i;
	raft_progress *best = NULL;

	if (r->role != RAFT_LEADER || r->config_index > r->commit ||
		raft_config_index_of(&r->config, r->id) >= 0)
		return false;

	for (i = 0; i < r->n_prs; i++)
	{
		raft_progress *pr = &r->prs[i];

		if (raft_config_is_voter(&r->config, pr->id) &&
			(best == NULL || pr->match > best->match))
			best = pr;
	}
	if (best && best->match == log_last_index(&r->log))
	{
		raft_message m;

		memset(&m, 0, sizeof(m));
		m.type = RAFT_MSG_TIMEOUT_NOW;
		m.to = best->id;
		m.term = r->term;
		raft_emit(r, &m, 0);
	}
	become_follower(r, r->term, 0);
	return true;
}

static int
change_allowed(const raft *r)
{
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	/* first: committing an entry of its term also commits what came before */
	if (!raft_committed_own_term(r))
		return RAFT_ENOTREADY;
	if (r->transferee != 0 || r->config_index > r->commit)
		return RAFT_EBUSY;
	return RAFT_OK;
}

/* append nc (taken over on success) as a configuration entry */
static int
propose_config(raft *r, raft_config *nc, raft_index *index)
{
	raft_entry	e;
	raft_progress *nprs;
	size_t		n_prs;
	raft_id		retiring = 0;
	int			rc;
	uint32_t	i;

	/* a removed server keeps getting the log until it knows (4.2.3) */
	for (i = 0; i < r->config.n; i++)
		if (raft_config_index_of(nc, r->config.servers[i].id) < 0 &&
			r->config.servers[i].id != r->id)
			retiring = r->config.servers[i].id;

	/* everything that can fail, first */
	memset(&e, 0, sizeof(e));
	rc = progress_prepare(r, nc, retiring, &nprs, &n_prs);
	if (rc == RAFT_OK)
	{
		rc = raft_config_encode_alloc(nc, &e.data, &e.len);
		if (rc == RAFT_OK)
		{
			e.term = r->term;
			e.type = RAFT_ENTRY_CONFIG;
			rc = log_append_owned(&r->log, &e, 1);
			if (rc != RAFT_OK)
				raft_free(e.data);
		}
		if (rc != RAFT_OK)
		{
			/* give back the prepared array: free only what it made */
			for (i = 0; i < n_prs; i++)
				if (!progress_owns_ring(r, nprs[i].inflight))
					raft_free(nprs[i].inflight);
			raft_free(nprs);
		}
	}
	if (rc != RAFT_OK)
	{
		raft_config_free(nc);
		return rc;
	}

	r->retiring = retiring;
	if (index)
		*index = e.index;
	membership_install(r, nc, e.index, nprs, n_prs);
	replication_broadcast_append(r);
	return RAFT_OK;
}

int
raft_add_server(raft *r, raft_id id, const char *name, const char *address,
				raft_index *index)
{
	raft_config nc;
	int			rc;

	RAFT_ASSERT(!r->in_ready);
	rc = change_allowed(r);
	if (rc != RAFT_OK)
		return rc;
	rc = raft_config_add(&r->config, id, RAFT_LEARNER, name, address, &nc);
	if (rc != RAFT_OK)
		return rc;
	return propose_config(r, &nc, index);
}

int
raft_promote(raft *r, raft_id id, raft_index *index)
{
	raft_config nc;
	raft_progress *pr;
	int			rc;

	RAFT_ASSERT(!r->in_ready);
	rc = change_allowed(r);
	if (rc != RAFT_OK)
		return rc;
	/* a voter that cannot keep up would stall commits (4.2.1): not yet */
	pr = progress_get(r, id);
	if (pr != NULL && pr->match < r->commit)
		return RAFT_EBUSY;
	rc = raft_config_promote(&r->config, id, &nc);
	if (rc != RAFT_OK)
		return rc;
	return propose_config(r, &nc, index);
}

int
raft_remove_server(raft *r, raft_id id, raft_index *index)
{
	raft_config nc;
	int			rc;

	RAFT_ASSERT(!r->in_ready);
	rc = change_allowed(r);
	if (rc != RAFT_OK)
		return rc;
	rc = raft_config_remove(&r->config, id, &nc);
	if (rc != RAFT_OK)
		return rc;
	return propose_config(r, &nc, index);
}

/* ----------
 * Leadership transfer (3.10), the sending side
 * ----------
 */
int
raft_transfer_leadership(raft *r, raft_id target)
{
	raft_progress *pr = NULL;
	size_t		i;

	RAFT_ASSERT(!r->in_ready);
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (target == 0)
	{
		for (i = 0; i < r->n_prs; i++)
			if (raft_config_is_voter(&r->config, r->prs[i].id) &&
				(pr == NULL || r->prs[i].match > pr->match))
				pr = &r->prs[i];
		if (pr == NULL)
			return RAFT_ENOTFOUND;
	}
	else
	{
		if (target == r->id)
			return RAFT_EINVAL;
		pr = progress_get(r, target);
		if (pr == NULL)
			return RAFT_ENOTFOUND;
		if (!raft_config_is_voter(&r->config, target))
			return RAFT_EINVAL;
	}
	if (r->transferee == pr->id)
		return RAFT_OK;
	if (r->transferee != 0)
		return RAFT_EBUSY;

	r->transferee = pr->id;
	r->transfer_elapsed = 0;
	if (pr->match == log_last_index(&r->log))
	{
		raft_message m;

		memset(&m, 0, sizeof(m));
		m.type = RAFT_MSG_TIMEOUT_NOW;
		m.to = pr->id;
		m.term = r->term;
		raft_emit(r, &m, 0);
	}
	else
		(void) replication_send_append(r, pr, true);
	return RAFT_OK;
}
