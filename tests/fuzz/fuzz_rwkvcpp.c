/* libFuzzer target: the rwkv.cpp model file parser on arbitrary bytes, with the checks of
 * fuzz_source_parser.h. */
#include "fuzz_source_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_source_parser(ucp_rwkvcpp_parse, data, size);
}
