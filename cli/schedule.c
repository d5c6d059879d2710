/* Placeholder: `cairn schedule` is filled in by the change that implements it. */
#include "cli.h"

int cli_schedule(int argc, char **argv, const cli_global *g) { (void)argc, (void)argv, (void)g; return CLI_EXIT_USAGE; }
