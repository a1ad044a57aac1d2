/* uc-eval: runs `uc eval` on its own, with the same arguments. */
#include "config.h"

#include "eval.h"

int main(int argc, char **argv)
{
	argv[0] = "eval";
	return uc_cmd_eval(argc, argv);
}
