#include "config.h"

#include "workers.h"

/* TODO: the verify pool lands with pack publishing; until then no jobs exist. */
int reg_workers_start(unsigned count)
{
	(void)count;
	return 0;
}

void reg_workers_notify(void)
{
}

void reg_workers_stop(void)
{
}
