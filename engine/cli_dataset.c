/* `dataset`: scans the images a config trains on and prints what kohya's sd-scripts prints before
 * training (datasets, subsets, image counts with repeats, buckets, steps), then every problem and how many
 * files were skipped. Text for people, --json for programs (docs/dataset.md lists the fields). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "sdtune/config.h"

static void usage(FILE *out)
{
    fputs("usage: sdtune-engine dataset CONFIG [--json] [--strict]\n"
          "  CONFIG    an sdtune config; its train_data_dir / reg_data_dir, in_json or dataset_config\n"
          "  --json    print one JSON object instead of text\n"
          "  --strict  skipped files (corrupt images, bad captions) and ignored folders are errors\n"
          "exit 0 when the dataset is usable (warnings allowed), 1 on errors, 2 on usage errors\n",
          out);
}

int cli_dataset(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    sdt_dataset_options options = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--strict") == 0) {
            options.strict = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "sdtune-engine dataset: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "sdtune-engine dataset: one config at a time\n");
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    sdt_diag_list diags;
    sdt_diag_list_init(&diags);
    sdt_config *cfg = sdt_config_load_file(path, &diags);
    if (!cfg) {
        sdt_diag_list_print(&diags, stderr);
        sdt_diag_list_free(&diags);
        return 1;
    }
    sdt_dataset *ds = sdt_dataset_scan(cfg, &options, &diags);
    char *report = NULL;
    if (ds) {
        sdt_dataset_report_options report_options;
        sdt_dataset_report_options_from_config(cfg, &report_options);
        report = sdt_dataset_report(ds, &report_options, json, &diags);
    }
    int status = 1;
    if (!report) {
        fprintf(stderr, "sdtune-engine dataset: out of memory\n");
    } else {
        fputs(report, stdout);
        status = sdt_diag_count(&diags, SDT_SEV_ERROR) ? 1 : 0;
    }
    free(report);
    sdt_dataset_free(ds);
    sdt_config_free(cfg);
    sdt_diag_list_free(&diags);
    return status;
}
