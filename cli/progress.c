/* A one-line progress bar on stderr, redrawn at most ten times a second. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct cli_progress {
	const char *label;
	int unit_bytes;
	double started;
	double last_draw;
};

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

cli_progress *cli_progress_start(const char *label, int unit_bytes)
{
	if (!isatty(STDERR_FILENO))
		return NULL;
	cli_progress *bar = calloc(1, sizeof *bar);
	if (!bar)
		return NULL;
	bar->label = label;
	bar->unit_bytes = unit_bytes;
	bar->started = now_seconds();
	return bar;
}

void cli_progress_update(void *ctx, uint64_t done, uint64_t total)
{
	cli_progress *bar = ctx;
	if (!bar || total == 0)
		return;

	double now = now_seconds();
	if (done < total && now - bar->last_draw < 0.1)
		return;
	bar->last_draw = now;

	enum { WIDTH = 30 };
	double fraction = (double)done / (double)total;
	int filled = (int)(fraction * WIDTH);
	char cells[WIDTH + 1];
	for (int i = 0; i < WIDTH; i++)
		cells[i] = i < filled ? '#' : ' ';
	cells[WIDTH] = '\0';

	double elapsed = now - bar->started;
	double rate = elapsed > 0 ? (double)done / elapsed : 0;
	if (bar->unit_bytes)
		fprintf(stderr, "\r%s [%s] %3d%% %.2f GB/s ", bar->label, cells, (int)(fraction * 100), rate / 1e9);
	else
		fprintf(stderr, "\r%s [%s] %3d%% %.1f M weights/s ", bar->label, cells, (int)(fraction * 100), rate / 1e6);
}

void cli_progress_finish(cli_progress *bar)
{
	if (!bar)
		return;
	fprintf(stderr, "\r\033[K");
	free(bar);
}
