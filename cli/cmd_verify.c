/* uc verify: run the registry's verification on a local pack. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char verify_usage[] =
	"Usage: uc verify PACK [--json] [--threads N]\n"
	"\n"
	"Checks PACK in three stages: structure (manifest and shard layout), integrity (every\n"
	"shard's SHA-256) and reconstruction (every tensor rebuilt and its SHA-256 compared with\n"
	"the manifest). Prints STRUCTURE OK and RECONSTRUCTION OK when all hold.\n"
	"\n"
	"Options:\n"
	"      --json       print the verification report as JSON on stdout\n"
	"      --threads N  tensors rebuilt in parallel; 0 (default) uses every online CPU\n"
	"  -h, --help       show this help\n"
	"\n"
	"Exit status: 0 verified, 1 could not run, 2 usage error, 3 structure failure,\n"
	"4 integrity failure, 5 reconstruction mismatch.\n";

static int exit_code_for(uc_verdict verdict)
{
	switch (verdict) {
	case UC_VERDICT_OK: return UC_EXIT_OK;
	case UC_VERDICT_STRUCTURE_FAILED: return UC_EXIT_STRUCTURE;
	case UC_VERDICT_INTEGRITY_FAILED: return UC_EXIT_INTEGRITY;
	case UC_VERDICT_RECONSTRUCTION_FAILED: return UC_EXIT_RECONSTRUCTION;
	}
	return UC_EXIT_FAILURE;
}

int uc_cmd_verify(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_THREADS };
	static const struct option options[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	uc_verify_options opts;
	uc_verify_options_init(&opts);
	int json = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case OPT_JSON: json = 1; break;
		case OPT_THREADS:
			if (cli_parse_threads("verify", optarg, &opts.threads) != 0)
				return UC_EXIT_USAGE;
			break;
		case 'h': fputs(verify_usage, stdout); return UC_EXIT_OK;
		default: fputs(verify_usage, stderr); return UC_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		cli_error("verify", "expected exactly one pack directory; run 'uc verify --help'");
		return UC_EXIT_USAGE;
	}

	uc_error err;
	uc_error_clear(&err);
	if (uc_isa_init(&err) != UC_OK)
		return cli_report_error("verify", &err);

	uc_report *report = NULL;
	cli_progress *bar = cli_progress_start("verifying", 1);
	opts.progress = cli_progress_update;
	opts.progress_ctx = bar;
	uc_status status = uc_verify_pack(argv[optind], &opts, &report, &err);
	cli_progress_finish(bar);
	if (status != UC_OK)
		return cli_report_error("verify", &err);

	char *text = json ? uc_report_to_json(report) : uc_report_to_text(report);
	int rc = exit_code_for(uc_report_verdict(report));
	if (!text) {
		cli_error("verify", "out of memory formatting the report");
		rc = UC_EXIT_FAILURE;
	} else {
		fputs(text, stdout);
		if (text[0] && text[strlen(text) - 1] != '\n')
			fputc('\n', stdout);
	}
	uc_free(text);
	uc_report_free(report);
	return rc;
}
