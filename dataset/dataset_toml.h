/* The project's TOML reader (src/config, toml++ underneath) as the dataset_config loader uses it: the
 * plain C tree with source positions. One parser for every TOML file sdtune reads, so a dataset config's
 * syntax errors read exactly like a config's. Internal to dataset/. */
#ifndef SDTUNE_DATASET_TOML_H
#define SDTUNE_DATASET_TOML_H

#include "../src/config/toml_tree.h"

#endif
