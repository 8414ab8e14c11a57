/* tessera: the command-line front end. The only place that exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *main_help =
    "usage: tessera COMMAND [OPTIONS]\n"
    "\n"
    "Multimodal models on any OpenCL device: CLIP, sentence-transformers (BERT),\n"
    "Whisper, BLIP and CoCa.\n"
    "\n"
    "commands:\n"
    "  classify   zero-shot image classification against text labels\n"
    "  caption    image captions with BLIP or CoCa\n"
    "  eval       zero-shot accuracy and calibration on a folder of labelled images\n"
    "  embed      image or text embeddings (.npy or JSON lines)\n"
    "  transcribe speech to text with Whisper\n"
    "  index      build and update embedding indexes of image folders\n"
    "  search     search an index by text or image\n"
    "  tokenize   token ids of texts\n"
    "  devices    list OpenCL devices\n"
    "  pull       download a checkpoint from a Hugging Face model repository\n"
    "  bench      measure speed, start-up and memory on full-size random models\n"
    "  tune       find the fastest GEMM configuration for this device and keep it\n"
    "\n"
    "'tessera COMMAND --help' describes each command.\n"
    "Environment: TESSERA_DEVICE (device index or name), TESSERA_DTYPE (the weight\n"
    "type of --dtype: f32, f16, bf16 or int8), TESSERA_CACHE_DIR (compiled\n"
    "kernels, tuning and pulled models; default $XDG_CACHE_HOME/tessera or ~/.cache/tessera),\n"
    "HF_TOKEN and HF_ENDPOINT (for pull).\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(main_help, stderr);
        exit(EXIT_USAGE);
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(main_help, stdout);
        exit(EXIT_OK);
    }
    if (strcmp(cmd, "--version") == 0) {
        puts("tessera 0.1.0");
        exit(EXIT_OK);
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"classify", cmd_classify},
                {"caption", cmd_caption},
                {"embed", cmd_embed},
                {"tokenize", cmd_tokenize},
                {"devices", cmd_devices},
                {"pull", cmd_pull},
                {"bench", cmd_bench},
                {"transcribe", cmd_transcribe},
                {"tune", cmd_tune},
                {"index", cmd_index},
                {"search", cmd_search},
                {"eval", cmd_eval}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmd, cmds[i].name) == 0)
            exit(cmds[i].fn(argc - 1, argv + 1));
    fprintf(stderr, "tessera: unknown command '%s' (see 'tessera --help')\n", cmd);
    exit(EXIT_USAGE);
}
