/*-------------------------------------------------------------------------
 *
 * heap.c
 *	  The consensus core's allocation hook.
 *
 * Every allocation in src/raft goes through raft_malloc() and friends so
 * that the PostgreSQL host can put the core's memory in a memory context of
 * its own and tests can make any allocation fail.  The hook is process-wide:
 * a host runs one core per process, or several that share one allocator.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>

#include "raft_int.h"

static void *
default_alloc(void *ctx, size_t size)
{
	(void) ctx;
	return malloc(size);
}

static void *
default_realloc(void *ctx, void *ptr, size_t size)
{
	(void) ctx;
	return realloc(ptr, size);
}

static void
default_free(void *ctx, void *ptr)
{
	(void) ctx;
	free(ptr);
}

static const raft_allocator default_allocator = {
	NULL, default_alloc, default_realloc, default_free
};

static raft_allocator current_allocator = {
	NULL, default_alloc, default_realloc, default_free
};

void
raft_set_allocator(const raft_allocator *a)
{
	current_allocator = a ? *a : default_allocator;
}

void *
raft_malloc(size_t size)
{
	return current_allocator.alloc(current_allocator.ctx, size ? size : 1);
}

void *
raft_calloc(size_t n, size_t size)
{
	void	   *p;

	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	p = raft_malloc(n * size);
	if (p)
		memset(p, 0, n * size);
	return p;
}

void *
raft_realloc(void *ptr, size_t size)
{
	return current_allocator.realloc(current_allocator.ctx, ptr, size ? size : 1);
}

void
raft_free(void *ptr)
{
	if (ptr)
		current_allocator.free(current_allocator.ctx, ptr);
}

void
raft_assert_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "raft: assertion \"%s\" failed at %s:%d\n", expr, file, line);
	abort();
}
