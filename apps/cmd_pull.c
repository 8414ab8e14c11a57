/* tessera pull: fetch a checkpoint from a Hugging Face model repository. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *pull_help =
    "usage: tessera pull REPO_ID [--revision R] [--cache-dir D] [--json]\n"
    "\n"
    "Downloads what tessera needs from a Hugging Face model repository (config,\n"
    "safetensors weights including shards, tokenizer and preprocessor files) into\n"
    "the cache. Afterwards `--model REPO_ID` finds it. Pickle files (.bin, .pt,\n"
    "...) are never downloaded.\n"
    "\n"
    "  --revision R   branch, tag or commit (default main)\n"
    "  --cache-dir D  default $TESSERA_CACHE_DIR, $XDG_CACHE_HOME/tessera or ~/.cache/tessera\n"
    "  --json         print {\"repo\": ..., \"path\": ...} when done\n"
    "\n"
    "Environment: HF_TOKEN (private or gated repositories), HF_ENDPOINT (a mirror),\n"
    "https_proxy / no_proxy. An interrupted download resumes when the command is run\n"
    "again; LFS files are checked against the hub's SHA-256; files appear only when\n"
    "complete.\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error (offline, not found, unauthorised, checksum), 2 usage error.\n";

typedef struct {
    char file[256];
    int tty;
} progress_state;

static void on_progress(void *user, const char *file, uint64_t done, uint64_t total)
{
    progress_state *s = user;
    if (!s->tty)
        return;
    if (strcmp(s->file, file) != 0) {
        if (s->file[0])
            fputc('\n', stderr);
        snprintf(s->file, sizeof s->file, "%s", file);
    }
    int width = 30, fill = total ? (int)(done * (uint64_t)width / total) : 0;
    fprintf(stderr, "\r%-28.28s [", file);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %7.1f / %.1f MB", done / 1e6, total / 1e6);
    fflush(stderr);
}

int cmd_pull(int argc, char **argv)
{
    const char *rev = NULL, *cache = NULL;
    int json = 0;
    cli_opt opts[] = {{"revision", 1, &rev, NULL}, {"cache-dir", 1, &cache, NULL},
                      {"json", 0, NULL, &json}};
    const char **pos = NULL;
    int n = 0;
    int rc = cli_parse(argc, argv, opts, 3, &pos, &n);
    if (rc < 0) {
        fputs(pull_help, stdout);
        free(pos);
        return EXIT_OK;
    }
    if (rc == EXIT_OK && n != 1)
        rc = cli_usage_error("pull", "give one repository id, for example openai/clip-vit-base-patch32");
    if (rc != EXIT_OK) {
        free(pos);
        return rc;
    }
    progress_state ps = {"", isatty(STDERR_FILENO)};
    tsr_pull_params p = tsr_pull_default_params();
    char cache_buf[4096];
    cli_cache_dir(cache_buf, sizeof cache_buf);
    p.revision = rev;
    p.cache_dir = cache ? cache : cache_buf;
    p.endpoint = getenv("HF_ENDPOINT");
    p.token = getenv("HF_TOKEN");
    p.progress = on_progress;
    p.user = &ps;
    char dir[4096];
    tsr_error err = {0};
    tsr_status st = tsr_pull(pos[0], &p, dir, sizeof dir, &err);
    if (ps.file[0])
        fputc('\n', stderr);
    if (st != TSR_OK) {
        cli_error("pull", &err);
        free(pos);
        return st == TSR_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_RUNTIME;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "repo", pos[0]);
        cJSON_AddStringToObject(o, "revision", rev ? rev : "main");
        cJSON_AddStringToObject(o, "path", dir);
        char *s = cJSON_PrintUnformatted(o);
        puts(s ? s : "{}");
        free(s);
        cJSON_Delete(o);
    } else {
        printf("%s is in %s\nuse it with --model %s%s%s\n", pos[0], dir, pos[0], rev ? "@" : "",
               rev ? rev : "");
    }
    free(pos);
    return EXIT_OK;
}
