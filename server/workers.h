/* Verify workers: a pool of threads that take jobs from the durable job table. */
#ifndef REG_WORKERS_H
#define REG_WORKERS_H

/* Requeues jobs left running by a previous process and starts `count` threads (0: one per
 * online CPU). Returns 0, or -1 after logging. */
int reg_workers_start(unsigned count);

/* Wakes the workers to look for new jobs (after a job was queued). */
void reg_workers_notify(void);

/* Asks every worker to stop, lets each finish the job it is running, and joins them. */
void reg_workers_stop(void);

#endif
