/*-------------------------------------------------------------------------
 *
 * replication.c
 *	  Log replication: sending and receiving AppendEntries, heartbeats and
 *	  snapshots, the commit rule, and the leader's tick.
 *
 * Dissertation 3.5 (AppendEntries and the consistency check), 3.6.2 (a
 * leader commits only entries of its own term by counting replicas),
 * 10.2.1 (the leader writes its own log in parallel with replication and
 * counts itself only once its write is durable), 10.2.2 (batching and
 * pipelining), 5 (snapshots), 6.2 and 9.6 (CheckQuorum).
 *
 * A follower validates everything it is about to append -- terms,
 * contiguity, every configuration entry decoded and checked -- before it
 * changes anything; an APPEND that fails validation is refused whole and
 * the leader is told so.  Accepted entries go into the log overlay and the
 * acknowledgement waits (raft_emit) until the host made them durable.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"
#include "config.h"

/* ----------
 * Leader side
 * ----------
 */

static void
send_snapshot(raft *r, raft_progress *pr)
{
	raft_message m;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_SNAPSHOT;
	m.to = pr->id;
	m.term = r->term;
	m.index = r->log.snap_index;
	m.log_term = r->log.snap_term;
	m.commit = r->commit;
	/* the configuration is attached when the ready is built */
	raft_emit(r, &m, 0);
	progress_become_snapshot(pr, r->log.snap_index);
}

/*
 * Send pr the entries from its next index on, within the count and byte
 * limits, or a snapshot if they are gone.  With send_empty, send even when
 * there is nothing new (to carry the commit index or probe).  Returns true
 * when something was sent.
 */
bool
replication_send_append(raft *r, raft_progress *pr, bool send_empty)
{
	raft_message m;
	raft_index	prev;
	raft_term	prev_term;
	raft_index	last = log_last_index(&r->log);
	raft_index	idx;
	uint32_t	n = 0;
	size_t		bytes = 0;

	if (progress_is_paused(r, pr))
		return false;
	if (pr->next > last + 1)
		pr->next = last + 1;
	prev = pr->next - 1;
	if (prev < r->log.snap_index && r->opts.fetch != NULL &&
		prev >= r->host_snap_index)
	{
		/* compacted from memory only: the host has the entries */
		prev_term = 0;
		if (prev > 0 && prev == r->host_snap_index)
			prev_term = r->host_snap_term;
		else if (prev > 0)
		{
			const raft_entry *pe = raft_entry_at(r, prev);

			if (pe == NULL)
				return false;	/* tried again at the next heartbeat */
			prev_term = pe->term;
		}
	}
	else if (prev < r->log.snap_index ||
			 log_term(&r->log, prev, &prev_term) != RAFT_OK)
	{
		if (!pr->recent_active)
			return false;
		send_snapshot(r, pr);
		return true;
	}

	for (idx = pr->next; idx <= last && n < r->opts.max_msg_entries; idx++)
	{
		/*
		 * Only the first entry is worth a fetch: reading the next window
		 * just to find the message full would read it twice.
		 */
		const raft_entry *e = n == 0 ? raft_entry_at(r, idx) :
			raft_entry_held(r, idx);

		if (e == NULL)
			break;
		if (n > 0 && bytes + e->len > r->opts.max_msg_bytes)
			break;
		bytes += e->len;
		n++;
	}
	if (n == 0 && !send_empty)
		return false;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.to = pr->id;
	m.term = r->term;
	m.index = prev;
	m.log_term = prev_term;
	m.commit = r->commit;
	m.n_entries = n;
	raft_emit(r, &m, pr->next);
	pr->commit_sent = RAFT_MAX(pr->commit_sent, RAFT_MIN(r->commit, prev + n));

	if (pr->state == RAFT_PROGRESS_REPLICATE && n > 0)
	{
		pr->next = prev + n + 1;
		progress_inflight_add(pr, prev + n);
	}
	else if (pr->state == RAFT_PROGRESS_PROBE)
		pr->probe_sent = true;
	return true;
}

/*
 * Ask for an APPEND to every follower: new entries, or at least the commit
 * index.  The broadcast is carried out when the host next takes a ready
 * batch (replication_flush_broadcast), so that all one pass of the host
 * did -- several proposals, acknowledgements from several followers that
 * each moved the commit index -- leaves as one APPEND per follower, and
 * each follower answers once.  Every message waits for the next ready
 * anyway; deferring the broadcast to then delays nothing.
 */
void
replication_broadcast_append(raft *r)
{
	if (r->role == RAFT_LEADER)
		r->bcast_pending = true;
}

/*
 * Carry out a pending broadcast.  A follower being probed gets its probe
 * even if there is nothing new; one being replicated to gets new entries,
 * or an empty APPEND only if that lets it commit more than it was told --
 * unless lazy_commit is set: then the commit index waits for the next
 * APPEND with entries or the next heartbeat, which both carry it.  Under
 * steady writes the next APPEND follows at once; on a cluster going idle a
 * follower learns of the last commit up to one heartbeat interval later,
 * and is spared an APPEND, its answer, and their wake-ups per commit.
 */
void
replication_flush_broadcast(raft *r)
{
	size_t		i;

	if (!r->bcast_pending)
		return;
	r->bcast_pending = false;
	if (r->role != RAFT_LEADER)
		return;
	for (i = 0; i < r->n_prs; i++)
	{
		raft_progress *pr = &r->prs[i];
		bool		send_empty;

		send_empty = pr->state != RAFT_PROGRESS_REPLICATE ||
			(!r->opts.lazy_commit &&
			 pr->commit_sent < RAFT_MIN(r->commit, pr->next - 1));
		/* more than one message holds: fill the in-flight window */
		if (replication_send_append(r, pr, send_empty) &&
			pr->state == RAFT_PROGRESS_REPLICATE)
			while (replication_send_append(r, pr, false))
				;
	}
}

void
replication_broadcast_heartbeat(raft *r, uint64_t ctx)
{
	size_t		i;
	raft_message m;

	for (i = 0; i < r->n_prs; i++)
	{
		memset(&m, 0, sizeof(m));
		m.type = RAFT_MSG_HEARTBEAT;
		m.to = r->prs[i].id;
		m.term = r->term;
		/* never ask a follower to commit what it may not have */
		m.commit = RAFT_MIN(r->prs[i].match, r->commit);
		m.ctx = ctx;
		raft_emit(r, &m, 0);
		r->prs[i].commit_sent = RAFT_MAX(r->prs[i].commit_sent, m.commit);
	}
}

/*
 * Append entries (their data owned by the caller until success) to the
 * leader's log and start replicating them.
 */
int
replication_append_local(raft *r, raft_entry *ents, size_t n)
{
	int			rc;

	RAFT_ASSERT(r->role == RAFT_LEADER);
	rc = log_append_owned(&r->log, ents, n);
	if (rc != RAFT_OK)
		return rc;
	replication_broadcast_append(r);
	/* a one-voter cluster commits in raft_advance(), once durable */
	return RAFT_OK;
}

static int
cmp_index_desc(const void *a, const void *b)
{
	raft_index	x = *(const raft_index *) a;
	raft_index	y = *(const raft_index *) b;

	return x < y ? 1 : (x > y ? -1 : 0);
}

/*
 * The commit rule (3.6.2): the highest index stored on a majority of
 * voters, if its entry is of the current term.  The leader's own copy
 * counts only up to what the host reported durable.
 */
bool
replication_maybe_commit(raft *r)
{
	raft_index	matches[RAFT_MAX_SERVERS];
	uint32_t	k = 0;
	uint32_t	i;
	raft_index	candidate;
	raft_term	t;

	if (r->role != RAFT_LEADER)
		return false;
	for (i = 0; i < r->config.n; i++)
	{
		const raft_server *s = &r->config.servers[i];
		raft_progress *pr;

		if (s->role != RAFT_VOTER)
			continue;
		if (s->id == r->id)
			matches[k++] = log_stable_index(&r->log);
		else if ((pr = progress_get(r, s->id)) != NULL)
			matches[k++] = pr->match;
		else
			matches[k++] = 0;
	}
	if (k == 0)
		return false;
	qsort(matches, k, sizeof(raft_index), cmp_index_desc);
	candidate = matches[raft_config_quorum(&r->config) - 1];
	if (candidate <= r->commit)
		return false;
	if (log_term(&r->log, candidate, &t) != RAFT_OK || t != r->term)
		return false;
	r->commit = candidate;

	readindex_leader_committed(r);
	if (membership_leader_removed(r))
		return false;
	return true;
}

static bool
quorum_active(raft *r)
{
	uint32_t	active = 0;
	uint32_t	i;

	for (i = 0; i < r->config.n; i++)
	{
		const raft_server *s = &r->config.servers[i];
		raft_progress *pr;

		if (s->role != RAFT_VOTER)
			continue;
		if (s->id == r->id)
			active++;
		else if ((pr = progress_get(r, s->id)) != NULL && pr->recent_active)
			active++;
	}
	return active >= raft_config_quorum(&r->config);
}

void
replication_leader_tick(raft *r)
{
	size_t		i;

	r->heartbeat_elapsed++;
	r->election_elapsed++;
	for (i = 0; i < r->n_prs; i++)
	{
		raft_progress *pr = &r->prs[i];

		pr->ticks_since_contact++;
		/* a snapshot that was never answered: probe again */
		if (pr->state == RAFT_PROGRESS_SNAPSHOT &&
			++pr->snapshot_ticks >= 2 * r->opts.election_ticks)
			progress_become_probe(pr);
	}

	if (r->election_elapsed >= r->opts.election_ticks)
	{
		r->election_elapsed = 0;
		/* CheckQuorum (6.2): a leader that lost its majority steps down */
		if (r->opts.check_quorum)
		{
			if (!quorum_active(r))
			{
				become_follower(r, r->term, 0);
				return;
			}
			for (i = 0; i < r->n_prs; i++)
				r->prs[i].recent_active = false;
		}
	}

	/* a transfer that did not happen within an election timeout is over */
	if (r->transferee != 0 && ++r->transfer_elapsed >= r->opts.election_ticks)
	{
		r->transferee = 0;
		r->transfer_elapsed = 0;
	}

	if (r->heartbeat_elapsed >= r->opts.heartbeat_ticks)
	{
		r->heartbeat_elapsed = 0;
		replication_broadcast_heartbeat(r, r->read_seq);
	}
}

static void
send_timeout_now(raft *r, raft_id to)
{
	raft_message m;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_TIMEOUT_NOW;
	m.to = to;
	m.term = r->term;
	raft_emit(r, &m, 0);
}

void
replication_handle_append_resp(raft *r, const raft_message *m)
{
	raft_progress *pr;
	bool		was_paused;

	if (r->role != RAFT_LEADER)
		return;
	pr = progress_get(r, m->from);
	if (pr == NULL)
		return;
	pr->recent_active = true;
	pr->ticks_since_contact = 0;

	if (m->reject)
	{
		if (pr->state == RAFT_PROGRESS_SNAPSHOT)
			progress_become_probe(pr);
		else if (!progress_maybe_decr(r, pr, m))
			return;
		(void) replication_send_append(r, pr, false);
		return;
	}

	was_paused = progress_is_paused(r, pr);
	if (!progress_maybe_update(pr, m->index))
		return;
	switch (pr->state)
	{
		case RAFT_PROGRESS_PROBE:
			progress_become_replicate(pr);
			break;
		case RAFT_PROGRESS_SNAPSHOT:
			if (pr->match >= pr->pending_snapshot)
				progress_become_replicate(pr);
			break;
		case RAFT_PROGRESS_REPLICATE:
			progress_inflight_free_to(pr, m->index);
			break;
	}

	if (replication_maybe_commit(r))
		replication_broadcast_append(r);
	else if (r->role != RAFT_LEADER)
		return;					/* stepped down: pr is freed */
	else if (was_paused)
	{
		/* it missed the broadcast that carried the commit index */
		(void) replication_send_append(r, pr, true);
	}
	if (r->role != RAFT_LEADER)
		return;
	while (replication_send_append(r, pr, false))
		;

	/* 3.10: the transfer target has caught up */
	if (m->from == r->transferee && pr->match == log_last_index(&r->log))
		send_timeout_now(r, m->from);
}

void
replication_handle_heartbeat_resp(raft *r, const raft_message *m)
{
	raft_progress *pr;

	if (r->role != RAFT_LEADER)
		return;
	pr = progress_get(r, m->from);
	if (pr == NULL)
		return;
	pr->recent_active = true;
	pr->ticks_since_contact = 0;
	pr->probe_sent = false;
	/* a lost APPEND must not stall a full window for ever */
	if (pr->state == RAFT_PROGRESS_REPLICATE && progress_inflight_full(r, pr))
		progress_inflight_free_first(pr);
	/*
	 * Behind: send what it lacks, or an empty probe when next is already
	 * past the end (a probe that was lost, a follower that lost its log).
	 */
	if (pr->match < log_last_index(&r->log))
		(void) replication_send_append(r, pr, true);
	if (m->ctx > pr->read_ack)
	{
		pr->read_ack = m->ctx;
		readindex_heartbeat_acked(r);
	}
	/* last: it may free pr */
	membership_retire_done(r, pr);
}

/* ----------
 * Follower side
 * ----------
 */

static void
heard_from_leader(raft *r, const raft_message *m)
{
	if (r->role != RAFT_FOLLOWER)
		become_follower(r, r->term, m->from);
	r->leader = m->from;
	r->election_elapsed = 0;
}

static void
reject_append(raft *r, const raft_message *m)
{
	raft_message resp;
	raft_index	last = log_last_index(&r->log);

	memset(&resp, 0, sizeof(resp));
	resp.type = RAFT_MSG_APPEND_RESP;
	resp.to = m->from;
	resp.term = r->term;
	resp.reject = true;
	resp.index = m->index;
	if (m->index > last)
	{
		resp.hint_term = 0;
		resp.hint_index = last + 1;
	}
	else
	{
		/* the first index of the conflicting term (fast back-off) */
		raft_term	ct = log_term_or_zero(&r->log, m->index);
		raft_index	floor = RAFT_MAX(r->log.snap_index, r->commit);
		raft_index	j = m->index;

		while (j > floor + 1 && log_term_or_zero(&r->log, j - 1) == ct)
			j--;
		resp.hint_term = ct;
		resp.hint_index = j;
	}
	raft_emit(r, &resp, 0);
}

/*
 * Check entries a leader asks us to append, before anything changes:
 * contiguous terms that never go down nor exceed the leader's, known types,
 * configuration entries that decode into valid configurations.
 */
static int
validate_entries(const raft_message *m, const raft_entry *ents, uint32_t n)
{
	uint32_t	k;
	raft_term	prev = m->log_term;

	for (k = 0; k < n; k++)
	{
		if (ents[k].term < prev || ents[k].term > m->term)
			return RAFT_EMALFORMED;
		if (ents[k].type != RAFT_ENTRY_NORMAL &&
			ents[k].type != RAFT_ENTRY_NOOP &&
			ents[k].type != RAFT_ENTRY_CONFIG)
			return RAFT_EMALFORMED;
		if (ents[k].len > 0 && ents[k].data == NULL)
			return RAFT_EMALFORMED;
		prev = ents[k].term;
	}
	return membership_check_entries(ents, n);
}

int
replication_handle_append(raft *r, const raft_message *m)
{
	raft_message resp;
	raft_term	t;
	uint32_t	k;
	raft_index	from;
	raft_index	last_new;
	bool		config_touched = false;
	raft_config nc;
	raft_index	nc_index = 0;
	uint32_t	j;
	int			rc;

	heard_from_leader(r, m);

	/* a snapshot is being installed: the log is about to be replaced */
	if (r->snap_requested)
	{
		reject_append(r, m);
		return RAFT_OK;
	}

	memset(&resp, 0, sizeof(resp));
	resp.type = RAFT_MSG_APPEND_RESP;
	resp.to = m->from;
	resp.term = r->term;

	if (m->index < r->commit)
	{
		/* all of it is committed here already */
		resp.index = r->commit;
		raft_emit(r, &resp, m->index);
		return RAFT_OK;
	}
	if (log_term(&r->log, m->index, &t) != RAFT_OK || t != m->log_term)
	{
		reject_append(r, m);
		return RAFT_OK;
	}

	/* skip what we already have; the rest replaces our log from "from" */
	for (k = 0; k < m->n_entries; k++)
	{
		raft_index	idx = m->index + 1 + k;

		if (idx > log_last_index(&r->log) ||
			log_term_or_zero(&r->log, idx) != m->entries[k].term)
			break;
	}
	from = m->index + 1 + k;
	if (k < m->n_entries)
	{
		/* a committed entry never conflicts (Log Matching, 3.5) */
		RAFT_ASSERT(from > r->commit);
		rc = validate_entries(m, m->entries + k, m->n_entries - k);

		/*
		 * Configurations take effect when appended (4.1), and a truncation
		 * brings back the one before: work out which will be in force and
		 * decode it now, before the log changes, so nothing can fail after.
		 */
		memset(&nc, 0, sizeof(nc));
		for (j = m->n_entries; rc == RAFT_OK && j > k; j--)
			if (m->entries[j - 1].type == RAFT_ENTRY_CONFIG)
			{
				config_touched = true;
				nc_index = m->index + j;
				rc = raft_decode_config(m->entries[j - 1].data,
										m->entries[j - 1].len, &nc);
				break;
			}
		if (rc == RAFT_OK && !config_touched && r->config_index >= from)
		{
			config_touched = true;
			rc = membership_config_at(r, from - 1, &nc, &nc_index);
		}
		if (rc == RAFT_OK)
			rc = log_replace(&r->log, from, m->entries + k, m->n_entries - k);
		if (rc != RAFT_OK)
		{
			/* refused whole, nothing changed: tell the leader and the host */
			raft_config_free(&nc);
			reject_append(r, m);
			return rc;
		}
		if (config_touched)
			membership_install(r, &nc, nc_index, NULL, 0);
	}

	last_new = m->index + m->n_entries;
	if (m->commit > r->commit)
		r->commit = RAFT_MAX(r->commit, RAFT_MIN(m->commit, last_new));
	resp.index = last_new;
	raft_emit(r, &resp, m->index);
	return RAFT_OK;
}

void
replication_handle_heartbeat(raft *r, const raft_message *m)
{
	raft_message resp;

	heard_from_leader(r, m);
	if (m->commit > r->commit)
		r->commit = RAFT_MAX(r->commit,
							 RAFT_MIN(m->commit, log_last_index(&r->log)));
	memset(&resp, 0, sizeof(resp));
	resp.type = RAFT_MSG_HEARTBEAT_RESP;
	resp.to = m->from;
	resp.term = r->term;
	resp.ctx = m->ctx;
	raft_emit(r, &resp, 0);
}

void
replication_handle_snapshot(raft *r, const raft_message *m)
{
	raft_message resp;

	heard_from_leader(r, m);
	if (m->index <= r->commit)
	{
		memset(&resp, 0, sizeof(resp));
		resp.type = RAFT_MSG_APPEND_RESP;
		resp.to = m->from;
		resp.term = r->term;
		resp.index = r->commit;
		raft_emit(r, &resp, m->index);
		return;
	}
	if (r->snap_requested)
		return;					/* already installing one */
	if (raft_config_validate(&m->config) != RAFT_OK)
		return;
	memset(&r->snap_req, 0, sizeof(r->snap_req));
	if (raft_config_copy(&m->config, &r->snap_req.config) != RAFT_OK)
		return;
	r->snap_req.from = m->from;
	r->snap_req.index = m->index;
	r->snap_req.term = m->log_term;
	r->snap_requested = true;
	r->snap_handed = false;
}

int
raft_snapshot_done(raft *r, bool ok, raft_index index, raft_term term,
				   const raft_config *c)
{
	raft_message resp;
	raft_config copy;
	raft_config nc;
	raft_index	nc_index = 0;
	raft_id		to;

	RAFT_ASSERT(!r->in_ready);
	if (!r->snap_requested)
		return RAFT_EINVAL;
	if (ok)
	{
		raft_term	t;
		raft_index	last_cfg = 0;
		bool		keeps_suffix;

		if (index < r->applied || index < r->snap_req.index || term == 0 ||
			raft_config_validate(c) != RAFT_OK)
			return RAFT_EINVAL;
		if (raft_config_copy(c, &copy) != RAFT_OK)
			return RAFT_ENOMEM;

		/*
		 * The configuration after the install: the last one in the suffix
		 * the log keeps (log_install_snapshot's rule), else the snapshot's.
		 * Decoded now, before anything changes.
		 */
		keeps_suffix = index > r->log.snap_index &&
			log_term(&r->log, index, &t) == RAFT_OK && t == term;
		memset(&nc, 0, sizeof(nc));
		if (keeps_suffix &&
			membership_config_at(r, log_last_index(&r->log), &nc, &last_cfg) != RAFT_OK)
		{
			raft_config_free(&copy);
			return RAFT_ENOMEM;
		}
		if (!keeps_suffix || last_cfg <= index)
		{
			raft_config_free(&nc);
			if (raft_config_copy(c, &nc) != RAFT_OK)
			{
				raft_config_free(&copy);
				return RAFT_ENOMEM;
			}
			last_cfg = index;
		}
		nc_index = last_cfg;
	}

	to = r->leader ? r->leader : r->snap_req.from;
	r->snap_requested = false;
	r->snap_handed = false;
	raft_config_free(&r->snap_req.config);

	memset(&resp, 0, sizeof(resp));
	resp.type = RAFT_MSG_APPEND_RESP;
	resp.to = to;
	resp.term = r->term;
	if (!ok)
	{
		resp.reject = true;
		resp.index = index;
		resp.hint_index = log_last_index(&r->log) + 1;
		raft_emit(r, &resp, 0);
		return RAFT_OK;
	}

	RAFT_ASSERT(!log_has_overlay(&r->log));
	log_install_snapshot(&r->log, index, term);
	raft_free_fetched(r);
	r->host_snap_index = index;
	r->host_snap_term = term;
	raft_config_free(&r->snap_config);
	r->snap_config = copy;
	r->snap_config_index = index;
	/* all of it is durable already: nothing to keep for a revert */
	membership_install(r, &nc, nc_index, NULL, 0);
	membership_stabilized(r);
	r->commit = RAFT_MAX(r->commit, index);
	r->applied = RAFT_MAX(r->applied, index);
	r->stable_hs.commit = RAFT_MAX(r->stable_hs.commit, index);

	/* acknowledge the snapshot only: entries kept after it are unverified */
	resp.index = index;
	raft_emit(r, &resp, index);
	return RAFT_OK;
}
