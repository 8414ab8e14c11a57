/* tessera pull: fetch a checkpoint from a Hugging Face model repository. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *pull_help =
    "usage: tessera pull REPO_ID [--revision R] [--cache-dir D] [--retries N] [--verbose] [--json]\n"
    "\n"
    "Downloads what tessera needs from a Hugging Face model repository into the\n"
    "cache: config, tokenizer and preprocessor files, and the weights the loader\n"
    "reads (model.safetensors, else the shards that model.safetensors.index.json\n"
    "names, else a CTranslate2 model.bin as faster-whisper repositories have it).\n"
    "The revision is resolved to its commit first and every file comes from that\n"
    "commit. Afterwards `--model REPO_ID` finds it. Pickle files (.bin, .pt, ...) are\n"
    "never downloaded or loaded.\n"
    "\n"
    "  --revision R   branch, tag, refs/pr/N or commit (default main)\n"
    "  --cache-dir D  default $TESSERA_CACHE_DIR, $XDG_CACHE_HOME/tessera or ~/.cache/tessera;\n"
    "                 files go to D/models/ORG--NAME/REVISION/\n"
    "  --retries N    retries per request after HTTP 429, 5xx or a dropped connection\n"
    "                 (default 5; waits 1, 2, 4, ... s, or what Retry-After says)\n"
    "  --verbose      say which commit was pulled, and each retry\n"
    "  --json         print {\"repo\", \"revision\", \"commit\", \"path\"} when done\n"
    "\n"
    "Token: HF_TOKEN, else the file at HF_TOKEN_PATH, else $HF_HOME/token (default\n"
    "~/.cache/huggingface/token, where `hf auth login` writes it). HF_ENDPOINT: a\n"
    "mirror. Proxies: https_proxy / no_proxy. Every file already here or resumed is\n"
    "verified (LFS files by SHA-256, others by git blob id) before it counts, so a\n"
    "re-pull replaces files that changed on the hub; an interrupted download\n"
    "resumes; files appear only when complete.\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime error (offline, not found, gated, unauthorised,\n"
    "checksum, rate-limited), 2 usage error.\n";

typedef struct {
    char file[256];
    int tty, verbose;
} progress_state;

/* Retries and replaced files: always on a terminal or with --verbose. */
static void on_notice(void *user, const char *msg)
{
    progress_state *s = user;
    if (!s->tty && !s->verbose)
        return;
    if (s->file[0] && s->tty)
        fputc('\n', stderr);
    s->file[0] = 0;
    fprintf(stderr, "tessera: pull: %s\n", msg);
}

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
    const char *rev = NULL, *cache = NULL, *retries = NULL;
    int json = 0, verbose = 0;
    cli_opt opts[] = {{"revision", 1, &rev, NULL}, {"cache-dir", 1, &cache, NULL},
                      {"retries", 1, &retries, NULL}, {"verbose", 0, NULL, &verbose},
                      {"json", 0, NULL, &json}};
    const char **pos = NULL;
    int n = 0;
    int rc = cli_parse(argc, argv, opts, 5, &pos, &n);
    if (rc < 0) {
        fputs(pull_help, stdout);
        free(pos);
        return EXIT_OK;
    }
    if (rc == EXIT_OK && n != 1)
        rc = cli_usage_error("pull", "give one repository id, for example openai/clip-vit-base-patch32");
    int n_retries = 5;
    if (rc == EXIT_OK && retries) {
        char *end;
        long v = strtol(retries, &end, 10);
        if (end == retries || *end || v < 0 || v > 20)
            rc = cli_usage_error("pull", "--retries takes a count from 0 to 20, not '%s'", retries);
        n_retries = (int)v;
    }
    if (rc != EXIT_OK) {
        free(pos);
        return rc;
    }
    progress_state ps = {"", isatty(STDERR_FILENO), 0};
    tsr_pull_params p = tsr_pull_default_params();
    char cache_buf[4096];
    cli_cache_dir(cache_buf, sizeof cache_buf);
    p.revision = rev;
    p.cache_dir = cache ? cache : cache_buf;
    p.endpoint = getenv("HF_ENDPOINT");
    char token[4096], origin[4200];
    if (cli_hf_token(token, sizeof token, origin, sizeof origin)) {
        p.token = token;
        p.token_origin = origin;
    }
    p.retries = n_retries;
    p.progress = on_progress;
    p.notice = on_notice;
    ps.verbose = verbose;
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
    char commit[41];
    int known = tsr_model_commit(dir, commit);
    if (verbose)
        fprintf(stderr, "tessera: pull: %s at %s is commit %s\n", pos[0], rev ? rev : "main",
                known ? commit : "(not named by the hub)");
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "repo", pos[0]);
        cJSON_AddStringToObject(o, "revision", rev ? rev : "main");
        if (known)
            cJSON_AddStringToObject(o, "commit", commit);
        else
            cJSON_AddNullToObject(o, "commit");
        cJSON_AddStringToObject(o, "path", dir);
        char *s = cJSON_PrintUnformatted(o);
        puts(s ? s : "{}");
        free(s);
        cJSON_Delete(o);
    } else {
        printf("%s (commit %s) is in %s\nuse it with --model %s%s%s\n", pos[0],
               known ? commit : "not named by the hub", dir, pos[0], rev ? "@" : "",
               rev ? rev : "");
    }
    free(pos);
    return EXIT_OK;
}
