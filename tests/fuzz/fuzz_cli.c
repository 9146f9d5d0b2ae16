/* fuzz_cli.c — the gpt2 tool's command-line parser (cli_parse in src/main.c, built without
 * its main) on any argv: the input split at NUL bytes into up to 64 arguments.
 * Properties: no crash, no leak (cli_free releases everything), a result of 0 or 2, an
 * error message that is one line, and a parsed command in range.
 */
#define GPT2_CLI_NO_MAIN 1
#include "../../src/main.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[66];
    int argc = 0;
    argv[argc++] = (char *)"gpt2";
    for (size_t i = 0; i <= size && argc < 65;) {
        argv[argc++] = buf + i;
        while (i < size && buf[i]) i++;
        i++;
    }
    argv[argc] = NULL;
    cli_opts o;
    char err[256];
    int r = cli_parse(argc, argv, &o, err, sizeof err);
    if (r != 0 && r != 2) abort();
    if (r == 2 && (strchr(err, '\n') || !err[0])) abort(); /* one line, and something said */
    if (r == 0 && (o.cmd < CMD_COMPLETE || o.cmd > CMD_VERSION)) abort();
    if (r == 0 && o.cmd == CMD_HELP && !o.help) abort();
    cli_free(&o);
    free(buf);
    return 0;
}
