/*
 * unit_main.c
 *	  Runs every unit test suite of the consensus core.
 *
 * Usage: unit_tests [substring]   (run only tests whose name contains it)
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

int			unit_passed;
int			unit_failed;
jmp_buf		unit_jmp;
const char *unit_current;
static const char *unit_filter;

void
unit_fail(const char *file, int line, const char *fmt,...)
{
	va_list		ap;

	fprintf(stdout, "FAIL %s: %s:%d: ", unit_current, file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	longjmp(unit_jmp, 1);
}

void
unit_run(const char *name, void (*fn) (void))
{
	if (unit_filter && !strstr(name, unit_filter))
		return;
	unit_current = name;
	if (setjmp(unit_jmp) == 0)
	{
		fn();
		unit_passed++;
	}
	else
		unit_failed++;
	fflush(stdout);
}

/* one line per test file; keep in the order of the Makefile */
#define SUITE(s) extern void s(void);
#include "suites.h"
#undef SUITE

int
main(int argc, char **argv)
{
	if (argc > 1)
		unit_filter = argv[1];
#define SUITE(s) s();
#include "suites.h"
#undef SUITE
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed ? 1 : 0;
}
