/* Placeholder: `cairn send`, `cairn event` and `cairn stream` are filled in by the change that implements them. */
#include "cli.h"

int cli_send(int argc, char **argv, const cli_global *g) { (void)argc, (void)argv, (void)g; return CLI_EXIT_USAGE; }
int cli_event(int argc, char **argv, const cli_global *g) { (void)argc, (void)argv, (void)g; return CLI_EXIT_USAGE; }
int cli_stream(int argc, char **argv, const cli_global *g) { (void)argc, (void)argv, (void)g; return CLI_EXIT_USAGE; }
