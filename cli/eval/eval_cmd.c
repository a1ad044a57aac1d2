/* `uc eval`: measures perplexity of a source checkpoint and, with --pack, of the pack's
 * reconstruction in the same run, and prints the evaluation record. */
#include "config.h"

#include "eval.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uc_pack.h"
#include "util.h"

/* The exit codes of uc(1). */
enum { EXIT_OK = 0, EXIT_RUN_FAILED = 1, EXIT_USAGE = 2 };

#define BYTE_LEVEL_VOCAB 256u

typedef struct {
	const char *source;
	const char *pack;
	const char *corpus;
	const char *tokenizer;
	int json;
	eval_options options;
} eval_args;

static void print_usage(FILE *out)
{
	fputs("Usage: uc eval --source CHECKPOINT [--pack DIR] --corpus TEXT [--tokenizer FILE]\n"
	      "               [--json] [--threads N] [--window TOKENS --stride TOKENS]\n"
	      "\n"
	      "Measures perplexity (PPL) on a text corpus for a Llama-family or RWKV v5 model,\n"
	      "from the source weights and, with --pack, from the pack's reconstruction.\n"
	      "\n"
	      "  --source CHECKPOINT  safetensors file, sharded index, llama2.c or rwkv.cpp file\n"
	      "  --pack DIR           pack of the same model; adds its PPL and the ratio\n"
	      "  --corpus TEXT        UTF-8 text; documents are separated by <|endoftext|>\n"
	      "  --tokenizer FILE     llama2.c tokenizer (tok512.bin format); without it the\n"
	      "                       text is read byte by byte (models with 256 tokens)\n"
	      "  --json               print only the evaluation record as JSON\n"
	      "  --threads N          worker threads (default: online CPUs); results do not\n"
	      "                       depend on N\n"
	      "  --window TOKENS      score long documents in runs of at most TOKENS positions\n"
	      "  --stride TOKENS      positions between run starts (1..window; default window)\n"
	      "  --help               show this help\n"
	      "\n"
	      "Without --window each document is truncated to the model's maximum sequence\n"
	      "length. Every next-token prediction is scored once; BOS is never a target.\n",
	      out);
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "uc eval: MESSAGE" and a newline to stderr. */
static void report(const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	fputs("uc eval: ", stderr);
	vfprintf(stderr, fmt, args);
	fputc('\n', stderr);
	va_end(args);
}

static int parse_count(const char *option, const char *text, uint32_t min, uint32_t max,
		       uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long value = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < min ||
	    value > max) {
		report("invalid %s value \"%s\": expected an integer in %u..%u", option, text, min,
		       max);
		return -1;
	}
	*out = (uint32_t)value;
	return 0;
}

/* Returns EXIT_OK, EXIT_USAGE, or -1 after --help. */
static int parse_args(int argc, char **argv, eval_args *args)
{
	static const struct option long_options[] = {
		{"source", required_argument, NULL, 's'},
		{"pack", required_argument, NULL, 'p'},
		{"corpus", required_argument, NULL, 'c'},
		{"tokenizer", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{"threads", required_argument, NULL, 'n'},
		{"window", required_argument, NULL, 'w'},
		{"stride", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint32_t threads = 0;
	int option;
	optind = 1;
	opterr = 0;
	while ((option = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
		int bad = 0;
		switch (option) {
		case 's': args->source = optarg; break;
		case 'p': args->pack = optarg; break;
		case 'c': args->corpus = optarg; break;
		case 't': args->tokenizer = optarg; break;
		case 'j': args->json = 1; break;
		case 'n': bad = parse_count("--threads", optarg, 1, 256, &threads); break;
		case 'w': bad = parse_count("--window", optarg, 2, 1u << 24, &args->options.window); break;
		case 'r': bad = parse_count("--stride", optarg, 1, 1u << 24, &args->options.stride); break;
		case 'h': print_usage(stdout); return -1;
		case ':':
			report("option %s needs a value", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			report("unknown option %s; see uc eval --help", argv[optind - 1]);
			return EXIT_USAGE;
		}
		if (bad)
			return EXIT_USAGE;
	}
	args->options.threads = threads;
	if (optind < argc) {
		report("unexpected argument \"%s\"; see uc eval --help", argv[optind]);
		return EXIT_USAGE;
	}
	if (!args->source || !args->corpus) {
		report("%s is required; see uc eval --help", !args->source ? "--source" : "--corpus");
		return EXIT_USAGE;
	}
	if (args->options.stride && !args->options.window) {
		report("--stride needs --window");
		return EXIT_USAGE;
	}
	if (args->options.window && !args->options.stride)
		args->options.stride = args->options.window;
	if (args->options.stride > args->options.window) {
		report("--stride %u is longer than --window %u, so tokens between windows would "
		       "never be scored", args->options.stride, args->options.window);
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* Everything one `uc eval` run loads and measures, freed by run_free. */
typedef struct {
	eval_args args;
	eval_model *model;
	eval_model *packed;
	eval_tokenizer *tokenizer;
	eval_corpus *corpus;
	eval_token_set tokens;
	eval_pack_info pack_info;
	eval_record record;
} eval_run;

static void run_free(eval_run *run)
{
	eval_model_free(run->model);
	eval_model_free(run->packed);
	eval_tokenizer_free(run->tokenizer);
	eval_corpus_free(run->corpus);
	eval_token_set_free(&run->tokens);
}

static uc_status load_source(eval_run *run, uc_error *err)
{
	const char *path = run->args.source;
	uc_source *source = NULL;
	eval_weights *weights = NULL;
	uc_status rc = uc_source_open(path, &source, err);
	if (rc == UC_OK)
		rc = eval_weights_from_source(source, &weights, err);
	uc_source_close(source);
	if (rc == UC_OK)
		rc = eval_model_new(weights, &run->model, err);
	if (rc == UC_OK)
		rc = uc_sha256_file(path, run->record.source.sha256, NULL, err);
	if (rc != UC_OK && !strstr(err->message, path))
		eval_error_prefix(err, "%s", path);
	return rc;
}

/* Loads the tokenizer (or checks the model is byte-level), the corpus, and encodes it. */
static uc_status load_text(eval_run *run, uc_error *err)
{
	uint32_t vocab = eval_model_vocab_size(run->model);
	uc_status rc = UC_OK;
	if (run->args.tokenizer) {
		const char *path = run->args.tokenizer;
		rc = eval_tokenizer_load(path, &run->tokenizer, err);
		if (rc == UC_OK && eval_tokenizer_vocab_size(run->tokenizer) != vocab)
			rc = eval_fail(err, UC_ERR_INVALID,
				       "%s: the tokenizer has %u tokens but the model's vocabulary has %u; "
				       "pass the tokenizer the model was trained with", path,
				       eval_tokenizer_vocab_size(run->tokenizer), vocab);
		if (rc == UC_OK)
			rc = uc_sha256_file(path, run->record.tokenizer.sha256, NULL, err);
	} else if (vocab != BYTE_LEVEL_VOCAB) {
		rc = eval_fail(err, UC_ERR_INVALID,
			       "the model's vocabulary has %u tokens, so it is not byte-level; pass "
			       "its tokenizer with --tokenizer", vocab);
	}
	if (rc == UC_OK)
		rc = eval_corpus_load(run->args.corpus, &run->corpus, err);
	if (rc == UC_OK)
		rc = eval_token_set_encode(run->corpus, run->tokenizer, &run->tokens, err);
	if (rc == UC_OK)
		memcpy(run->record.corpus.sha256, run->corpus->sha256, UC_SHA256_BYTES);
	return rc;
}

static uc_status load_pack(eval_run *run, uc_error *err)
{
	eval_weights *weights = NULL;
	uc_status rc = eval_weights_from_pack(run->args.pack, eval_model_weights(run->model),
					      &weights, &run->pack_info, err);
	if (rc == UC_OK)
		rc = eval_model_new(weights, &run->packed, err);
	if (rc == UC_OK) {
		memcpy(run->record.pack_manifest.sha256, run->pack_info.manifest_sha256,
		       UC_SHA256_BYTES);
		run->record.pack_dtype = uc_dtype_name(run->pack_info.dtype);
	}
	return rc;
}

static void fill_record(eval_run *run)
{
	eval_record *record = &run->record;
	record->arch = eval_model_arch(run->model);
	record->source.name = run->args.source;
	record->has_pack = run->args.pack != NULL;
	record->pack_manifest.name = run->args.pack;
	record->corpus.name = run->args.corpus;
	record->has_tokenizer = run->args.tokenizer != NULL;
	record->tokenizer.name = run->args.tokenizer;
	record->window = run->args.options.window;
	record->stride = run->args.options.stride;
	record->seq_len = record->window ? record->window : eval_model_max_seq_len(run->model);
	record->measured_at = (int64_t)time(NULL);
}

static uc_status measure(eval_run *run, uc_error *err)
{
	uc_status rc = load_source(run, err);
	if (rc == UC_OK)
		rc = load_text(run, err);
	if (rc == UC_OK && run->args.pack)
		rc = load_pack(run, err);
	if (rc != UC_OK)
		return rc;
	fill_record(run);
	run->record.threads = eval_choose_threads(run->args.options.threads);

	rc = eval_score_tokens(run->model, &run->tokens, &run->args.options, &run->record.baseline,
			       err);
	if (rc == UC_OK && run->packed)
		rc = eval_score_tokens(run->packed, &run->tokens, &run->args.options,
				       &run->record.compressed, err);
	return rc;
}

int uc_cmd_eval(int argc, char **argv)
{
	eval_run run;
	memset(&run, 0, sizeof run);
	int code = parse_args(argc, argv, &run.args);
	if (code != EXIT_OK)
		return code < 0 ? EXIT_OK : code;

	uc_error err;
	uc_error_clear(&err);
	if (measure(&run, &err) != UC_OK) {
		report("%s", err.message);
		run_free(&run);
		return EXIT_RUN_FAILED;
	}

	char *text = run.args.json ? eval_record_to_json(&run.record)
				   : eval_record_to_text(&run.record);
	if (!text) {
		report("out of memory formatting the evaluation record");
		code = EXIT_RUN_FAILED;
	} else {
		fputs(text, stdout);
		if (run.args.json)
			fputc('\n', stdout);
		free(text);
		code = fflush(stdout) == 0 ? EXIT_OK : EXIT_RUN_FAILED;
	}
	run_free(&run);
	return code;
}
