/* The parts of the demo's files (train/demo_*.c). Each writer fills a folder that already exists. */
#ifndef SDTUNE_TRAIN_DEMO_INTERNAL_H
#define SDTUNE_TRAIN_DEMO_INTERNAL_H

/* vocab.json + merges.txt: byte-level BPE with merges for the demo's caption words and the real CLIP ids
 * of <|startoftext|> (49406) and <|endoftext|> (49407). */
int sdt_demo_write_tokenizer(const char *dir, char **error);
/* SDT_DEMO_IMAGE_COUNT PNG images with .txt captions. */
int sdt_demo_write_shapes(const char *dir, char **error);
/* The caption of shape image i ("a red circle on a blue background"; caller frees). */
char *sdt_demo_caption(int i);
/* The sample prompt file's text (caller frees); NULL when out of memory. */
char *sdt_demo_sample_prompts(void);
/* rm -r (plain files and folders only); errors are ignored: it cleans up after a failure. */
void sdt_demo_remove_tree(const char *path);

#endif
