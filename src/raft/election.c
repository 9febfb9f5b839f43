/*-------------------------------------------------------------------------
 *
 * election.c
 *	  Leader election: timeouts, PreVote, votes, role changes and the
 *	  receiving end of a leadership transfer.
 *
 * Dissertation 3.4 (election), 3.6.1 (the up-to-date check), 9.6
 * (PreVote: ask first whether an election could be won, without touching
 * the term, so that a server rejoining from a partition does not depose a
 * healthy leader), 3.10 (TimeoutNow skips PreVote and leases).
 *
 * A candidate's own vote counts only once the host reported its new term
 * and vote durable (election_self_vote_durable, called from raft_advance);
 * its VOTE requests are held by raft_emit() until then, so no peer's vote
 * can arrive earlier either.  A granted vote is held the same way until
 * the host has the vote on disk.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"
#include "config.h"

void
election_reset_timeout(raft *r)
{
	r->election_elapsed = 0;
	r->randomized_timeout = r->opts.election_ticks +
		raft_random(r, r->opts.election_ticks);
}

bool
election_promotable(const raft *r)
{
	if (r->snap_requested)
		return false;
	if (raft_config_is_voter(&r->config, r->id))
		return true;
	/* 4.2.2: removed by a change not yet committed: may still be needed */
	return raft_config_index_of(&r->config, r->id) < 0 && r->config.n > 0 &&
		r->config_index > r->commit;
}

static void
votes_reset(raft *r)
{
	memset(r->votes, 0, sizeof(r->votes));
}

static void
votes_record(raft *r, raft_id id, bool granted)
{
	uint32_t	i;

	for (i = 0; i < r->config.n; i++)
	{
		if (r->config.servers[i].id == id &&
			r->config.servers[i].role == RAFT_VOTER && r->votes[i] == 0)
			r->votes[i] = granted ? 1 : -1;
	}
}

/* 1: won, -1: lost, 0: undecided */
static int
votes_tally(const raft *r)
{
	uint32_t	i;
	uint32_t	yes = 0;
	uint32_t	no = 0;
	uint32_t	quorum = raft_config_quorum(&r->config);

	for (i = 0; i < r->config.n; i++)
	{
		if (r->config.servers[i].role != RAFT_VOTER)
			continue;
		if (r->votes[i] > 0)
			yes++;
		else if (r->votes[i] < 0)
			no++;
	}
	if (yes >= quorum)
		return 1;
	if (no >= quorum)
		return -1;
	return 0;
}

static void
leave_leadership(raft *r)
{
	raft_drop_appends(r);
	progress_free_all(r);
	r->retiring = 0;
	r->transferee = 0;
	r->transfer_elapsed = 0;
}

static void
reset_role(raft *r, raft_term term)
{
	if (r->term != term)
	{
		r->term = term;
		r->vote = 0;
		raft_drop_stale_held(r);
	}
	if (r->role == RAFT_LEADER)
		leave_leadership(r);
	r->leader = 0;
	r->heartbeat_elapsed = 0;
	r->self_vote_pending = false;
	readindex_clear(r);
	election_reset_timeout(r);
}

void
become_follower(raft *r, raft_term term, raft_id leader)
{
	reset_role(r, term);
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
}

void
become_leader(raft *r)
{
	raft_entry	noop;

	RAFT_ASSERT(r->role == RAFT_CANDIDATE);
	r->role = RAFT_LEADER;
	r->leader = r->id;
	r->heartbeat_elapsed = 0;
	r->transferee = 0;
	election_reset_timeout(r);
	if (progress_rebuild(r) != RAFT_OK)
	{
		/* cannot lead without progress tracking: let another server try */
		become_follower(r, r->term, 0);
		return;
	}

	/*
	 * A no-op entry of the new term: committing it commits everything
	 * before it (3.6.2) and is what lets the leader serve reads (6.4).
	 */
	memset(&noop, 0, sizeof(noop));
	noop.term = r->term;
	noop.type = RAFT_ENTRY_NOOP;
	if (replication_append_local(r, &noop, 1) != RAFT_OK)
	{
		become_follower(r, r->term, 0);
		return;
	}
}

static void
send_vote_requests(raft *r, bool pre_vote, bool transfer)
{
	uint32_t	i;
	raft_message m;

	for (i = 0; i < r->config.n; i++)
	{
		const raft_server *s = &r->config.servers[i];

		if (s->id == r->id || s->role != RAFT_VOTER)
			continue;
		memset(&m, 0, sizeof(m));
		m.type = pre_vote ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE;
		m.to = s->id;
		m.term = pre_vote ? r->term + 1 : r->term;
		m.index = log_last_index(&r->log);
		m.log_term = log_last_term(&r->log);
		m.flags = transfer ? RAFT_MSG_FLAG_TRANSFER : 0;
		raft_emit(r, &m, 0);
	}
}

int
election_start(raft *r, bool pre_vote, bool transfer)
{
	votes_reset(r);
	if (pre_vote)
	{
		reset_role(r, r->term);
		r->role = RAFT_PRECANDIDATE;
		/* nothing to persist: the self vote counts at once */
		votes_record(r, r->id, true);
		if (votes_tally(r) > 0)
			return election_start(r, false, transfer);
		send_vote_requests(r, true, transfer);
		return RAFT_OK;
	}

	reset_role(r, r->term + 1);
	r->role = RAFT_CANDIDATE;
	r->vote = r->id;
	r->self_vote_pending = true;
	send_vote_requests(r, false, transfer);
	return RAFT_OK;
}

void
election_self_vote_durable(raft *r)
{
	if (r->role != RAFT_CANDIDATE || !r->self_vote_pending ||
		r->stable_hs.term != r->term || r->stable_hs.vote != r->id)
		return;
	r->self_vote_pending = false;
	votes_record(r, r->id, true);
	if (votes_tally(r) > 0)
		become_leader(r);
}

void
election_tick(raft *r)
{
	if (r->election_elapsed < UINT32_MAX)
		r->election_elapsed++;
	if (r->election_elapsed >= r->randomized_timeout && election_promotable(r))
	{
		r->election_elapsed = 0;
		(void) election_start(r, r->opts.pre_vote, false);
	}
}

void
election_handle_vote(raft *r, const raft_message *m)
{
	raft_message resp;
	bool		pre = (m->type == RAFT_MSG_PREVOTE);
	bool		can_vote;
	bool		up_to_date;
	raft_term	last_term = log_last_term(&r->log);

	can_vote = r->vote == m->from ||
		(r->vote == 0 && r->leader == 0) ||
		(pre && m->term > r->term);
	/* 3.6.1: the candidate's log must be at least as up to date as ours */
	up_to_date = m->log_term > last_term ||
		(m->log_term == last_term && m->index >= log_last_index(&r->log));

	memset(&resp, 0, sizeof(resp));
	resp.type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
	resp.to = m->from;
	if (can_vote && up_to_date)
	{
		resp.term = m->term;
		if (!pre)
		{
			r->vote = m->from;
			election_reset_timeout(r);
		}
	}
	else
	{
		resp.term = r->term;
		resp.reject = true;
	}
	raft_emit(r, &resp, 0);
}

void
election_handle_vote_resp(raft *r, const raft_message *m)
{
	int			outcome;

	if (m->type == RAFT_MSG_PREVOTE_RESP && r->role != RAFT_PRECANDIDATE)
		return;
	if (m->type == RAFT_MSG_VOTE_RESP &&
		(r->role != RAFT_CANDIDATE || m->term != r->term))
		return;
	votes_record(r, m->from, !m->reject);
	outcome = votes_tally(r);
	if (outcome < 0)
		become_follower(r, r->term, 0);
	else if (outcome > 0)
	{
		if (r->role == RAFT_PRECANDIDATE)
			(void) election_start(r, false, false);
		else if (!r->self_vote_pending)
			become_leader(r);
	}
}

void
election_handle_timeout_now(raft *r, const raft_message *m)
{
	(void) m;
	if (r->role == RAFT_LEADER || !election_promotable(r))
		return;
	(void) election_start(r, false, true);
}
