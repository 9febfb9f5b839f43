/*
 * unit.h
 *	  A minimal test harness for the consensus core's unit tests.
 *
 * A test is a function; a failing CHECK reports file, line and expression
 * and ends that test.  Each test file defines one suite function that calls
 * RUN() for its tests; unit_main.c calls every suite and prints the closing
 * line "N passed, M failed".
 */
#ifndef RAFTPG_UNIT_H
#define RAFTPG_UNIT_H

#include <setjmp.h>
#include <stdio.h>

extern int	unit_passed;
extern int	unit_failed;
extern jmp_buf unit_jmp;
extern const char *unit_current;

extern void unit_fail(const char *file, int line, const char *fmt,...)
			__attribute__((format(printf, 3, 4), noreturn));

#define CHECK(e) \
	do { if (!(e)) unit_fail(__FILE__, __LINE__, "%s", #e); } while (0)

#define CHECK_EQ(a, b) \
	do { \
		unsigned long long a_ = (unsigned long long) (a); \
		unsigned long long b_ = (unsigned long long) (b); \
		if (a_ != b_) \
			unit_fail(__FILE__, __LINE__, "%s == %s (%llu != %llu)", #a, #b, a_, b_); \
	} while (0)

#define RUN(fn) unit_run(#fn, fn)

extern void unit_run(const char *name, void (*fn) (void));

#endif
