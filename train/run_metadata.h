/* kohya's dataset metadata of a LoRA run without dataset_config (kohya_inventory §6.5): ss_tag_frequency
 * and ss_bucket_info, formatted as Python's json.dumps writes them. A file of its own because the dataset's
 * header includes the config's, which cannot sit beside the model headers trainer_save.c needs. */
#ifndef SDTUNE_TRAIN_RUN_METADATA_H
#define SDTUNE_TRAIN_RUN_METADATA_H

#include "sdtune/strutil.h"
#include "trainer_data.h"

/* {"<subset dir name>": {"tag": count, ...}, ...}: kohya's set_tag_frequency, once per image (not per
 * repeat) over the raw caption (the class tokens when there is no caption file), train and reg subsets
 * alike; subsets whose folders share a name share one entry. Caller frees. Returns 0, or -1 with *error. */
int sdt_run_tag_frequency_json(const sdt_train_data *d, char **out, char **error);

/* {"buckets": {"<id>": {"resolution": [w, h], "count": n}, ...}, "mean_img_ar_error": x} with count the
 * images times repeats and only buckets in use, or *out = NULL when bucketing is off (kohya leaves
 * bucket_info None then). Returns 0, or -1 with *error. */
int sdt_run_bucket_info_json(const sdt_train_data *d, char **out, char **error);

/* s as a JSON string the way json.dumps(ensure_ascii=True) writes it: quotes, backslash escapes, every
 * character outside printable ASCII as \uXXXX (UTF-16 pairs above U+FFFF; invalid UTF-8 as U+FFFD). */
void sdt_json_append_string(sdt_buf *b, const char *s);

#endif
