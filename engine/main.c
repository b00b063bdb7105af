/* sdtune-engine: the trainer process. Commands dispatch to engine/cli_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_usage(FILE *out)
{
    fputs(
        "usage: sdtune-engine COMMAND [ARGS]\n"
        "\n"
        "The sdtune trainer. It runs under the sdtune terminal UI or on its own.\n"
        "\n"
        "commands:\n"
        "  train CONFIG [--protocol] [--threads N] [--quiet] [--memory-limit MIB]\n"
        "                 train what the config describes (config.toml: the built-in demo); exit 0 when\n"
        "                 done or stopped, 1 failed, 2 usage or config error, 3 aborted\n"
        "  validate [--preflight] [--no-fs] [--device D] FILE...\n"
        "                 check config files; prints every problem as FILE:LINE:COL: error|warning: ...\n"
        "                 exit 0 when clean (warnings allowed), 1 on errors, 2 on usage errors\n"
        "  schema --toml | --markdown\n"
        "                 print the default config.toml or the settings reference (docs/config.md)\n"
        "  devices        list the devices the engine can train on\n"
        "  inspect MODEL [--vae FILE] [--json]\n"
        "                 what a checkpoint (.safetensors file or diffusers folder) is and whether it is\n"
        "                 complete, from its headers; exit 0 when complete, 1 on problems, 2 on usage "
        "errors\n"
        "  dataset CONFIG [--json] [--strict]\n"
        "                 scan the images and captions a config trains on and print kohya's dataset summary\n"
        "                 (subsets, images with repeats, buckets, steps); exit 0 when usable, 1 on errors\n"
        "  plan CONFIG [--device cpu|cuda] [--dtype D] [--arch ARCH] [--free MIB]\n"
        "                 print the run's memory plan (weights, trainable, grads, optimizer, activations,\n"
        "                 workspace) against the device's free memory; exit 0 when it fits, 1 when not\n"
        "  init-model --arch ARCH --seed N --out PATH [--dtype fp32|fp16|bf16] [--format ldm|diffusers]\n"
        "                 write a randomly initialised model (sd15, sd15-tiny); the same seed, the same "
        "bytes\n"
        "  bench [--arch ARCH] [--res PX] [--batch 1,4,8] [--mode lora|full] [--steps N] [--device D]\n"
        "                 time training steps of a random model on random cached latents: images/s,\n"
        "                 TFLOP/s, MFU, peak memory and where the time goes (--help for every option)\n"
        "\n"
        "options:\n"
        "  -h, --help     show this help\n"
        "  -V, --version  show the version and the backends this build has\n",
        out);
}

static void print_version(void)
{
#ifdef SDTUNE_HAVE_CUDA
    const char *backends = "cpu, cuda";
#else
    const char *backends = "cpu";
#endif
    printf("sdtune-engine %s (backends: %s)\n", SDTUNE_VERSION, backends);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *command = argv[1];
    if (strcmp(command, "-h") == 0 || strcmp(command, "--help") == 0 || strcmp(command, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(command, "-V") == 0 || strcmp(command, "--version") == 0) {
        print_version();
        return 0;
    }
    if (strcmp(command, "train") == 0)
        return cli_train(argc - 2, argv + 2);
    if (strcmp(command, "validate") == 0)
        return cli_validate(argc - 2, argv + 2);
    if (strcmp(command, "schema") == 0)
        return cli_schema(argc - 2, argv + 2);
    if (strcmp(command, "devices") == 0)
        return cli_devices(argc - 2, argv + 2);
    if (strcmp(command, "inspect") == 0)
        return cli_inspect(argc - 2, argv + 2);
    if (strcmp(command, "dataset") == 0)
        return cli_dataset(argc - 2, argv + 2);
    if (strcmp(command, "plan") == 0)
        return cli_plan(argc - 2, argv + 2);
    if (strcmp(command, "init-model") == 0)
        return cli_init_model(argc - 2, argv + 2);
    if (strcmp(command, "bench") == 0)
        return cli_bench(argc - 2, argv + 2);
    fprintf(stderr, "sdtune-engine: unknown command '%s'\n", command);
    print_usage(stderr);
    return 2;
}
