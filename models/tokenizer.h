/* The CLIP tokenizer: byte-level BPE over the CLIP vocabulary (SD 1.x's CLIP ViT-L/14 and SDXL's two
 * encoders share it), giving the ids transformers' CLIPTokenizer gives with ftfy installed, plus the
 * 77-token windows sd-scripts feeds the text encoders (sd_arch_spec.md §3.5, §3.6; docs/tokenizer.md).
 *
 * Every function returns 0 on success and -1 on failure with *error set to a message the caller frees;
 * nothing here exits or prints. One tokenizer keeps a cache of the words it has split, so it must not
 * be used by two threads at once; load one per thread instead. */
#ifndef SDTUNE_MODELS_TOKENIZER_H
#define SDTUNE_MODELS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_tokenizer sdt_tokenizer;

/* The length of every window the text encoders take: BOS, 75 ids, EOS. */
#define SDT_TOKENIZER_WINDOW 77
/* The merges the CLIP tokenizer uses: 49152 - 256 - 2 (transformers reads no more from merges.txt). */
#define SDT_TOKENIZER_CLIP_MERGES 48894
/* The pad ids the SD models use: the end-of-text token (SD 1.x, SDXL's first tokenizer) and "!" (SD 2.x
 * and SDXL's second tokenizer, padded with id 0). */
#define SDT_TOKENIZER_PAD_EOS 49407
#define SDT_TOKENIZER_PAD_ZERO 0
/* The Hugging Face repository whose tokenizer sdtune looks for in the Hugging Face cache. */
#define SDT_TOKENIZER_REPO "openai/clip-vit-large-patch14"

/* Loads a Hugging Face tokenizer: vocab.json (token -> id) and merges.txt (a "#version" line, then one
 * merge per line, best first; at most SDT_TOKENIZER_CLIP_MERGES are read, as transformers does). Errors
 * name the file and line. */
int sdt_tokenizer_load(const char *vocab_path, const char *merges_path, sdt_tokenizer **out, char **error);

/* Builds a tokenizer from a merge list in memory in openai's bpe_simple_vocab format: a header line,
 * then merges. The first n_merges are used (0: all; the CLIP vocabulary takes
 * SDT_TOKENIZER_CLIP_MERGES) and the vocabulary is derived from them: the 256 byte symbols, the same
 * with "</w>", one token per merge, then <|startoftext|> and <|endoftext|>. name labels errors. */
int sdt_tokenizer_load_merge_list(const char *name, const char *text, size_t len, size_t n_merges,
                                  sdt_tokenizer **out, char **error);

/* The same, read from a file, plain or gzip-compressed (bpe_simple_vocab_16e6.txt.gz). */
int sdt_tokenizer_load_merge_file(const char *path, size_t n_merges, sdt_tokenizer **out, char **error);

void sdt_tokenizer_free(sdt_tokenizer *tok);

/* Makes a vocabulary token a special token the way transformers treats the special tokens a tokenizer's
 * files declare: every occurrence in the raw text is split out before any cleanup and becomes that id.
 * SDXL's second tokenizer and SD 2.x's declare their pad token "!" (id 0) so; their "!" then always
 * encodes as 0, never as the word-final "!</w>". At most SDT_TOKENIZER_MAX_SPECIALS may be added. */
#define SDT_TOKENIZER_MAX_SPECIALS 8
int sdt_tokenizer_add_special(sdt_tokenizer *tok, const char *token, char **error);

/* Locates vocab.json and merges.txt:
 *   1. configured (may be NULL or ""): a folder holding both, or the path of a vocab.json with
 *      merges.txt beside it (the config's tokenizer_dir). When given it is the answer or the error;
 *      nothing else is searched.
 *   Otherwise, in order:
 *   2. model_dir/tokenizer/ (model_dir may be NULL or ""), the diffusers layout;
 *   3. the Hugging Face cache: $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
 *      else ~/.cache/huggingface/hub; in it models--ORG--NAME/snapshots/<each>/ for repo_id
 *      (SDT_TOKENIZER_REPO when NULL), the files at the snapshot's root or in its tokenizer/ folder; the
 *      snapshot refs/main names is tried first.
 * On success *vocab_path and *merges_path are set (caller frees). When nothing is found the error lists
 * every place looked in and how to provide the files. */
int sdt_tokenizer_find(const char *configured, const char *model_dir, const char *repo_id, char **vocab_path,
                       char **merges_path, char **error);

/* sdt_tokenizer_find, then sdt_tokenizer_load. */
int sdt_tokenizer_open(const char *configured, const char *model_dir, const char *repo_id,
                       sdt_tokenizer **out, char **error);

/* Token ids of text (UTF-8, len bytes; no BOS or EOS), as CLIPTokenizer.encode(text,
 * add_special_tokens=False). *ids (caller frees) holds *count ids; it is NULL when there are none. */
int sdt_tokenizer_encode(sdt_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *count,
                         char **error);

/* out[0..max_length) = BOS, the first max_length - 2 ids, EOS, then pad_id up to max_length: what
 * tokenizer(text, padding="max_length", truncation=True, max_length=max_length) gives. max_length >= 2.
 * *truncated (may be NULL) tells whether ids were dropped. */
int sdt_tokenizer_encode_padded(sdt_tokenizer *tok, const char *text, size_t len, size_t max_length,
                                int32_t pad_id, int32_t *out, int *truncated, char **error);

/* sd-scripts' windows for --max_token_length: 0 or 75 gives one window of 77 (BOS, 75 ids, EOS, pads),
 * 150 two and 225 three, each BOS + 75 positions + a last token, with the fix-ups sd-scripts applies
 * when pad_id is not the EOS id (sd_arch_spec.md §3.6). out holds n * 77 ids (room for 3 * 77). */
int sdt_tokenizer_encode_windows(sdt_tokenizer *tok, const char *text, size_t len, int max_token_length,
                                 int32_t pad_id, int32_t *out, int *n_windows, char **error);

/* CLIPTokenizer's cleanup of text, whitespace_clean(ftfy.fix_text(text)).lower() (ftfy's mojibake
 * repair aside, see docs/tokenizer.md), applied to the whole text; the encoders apply it to each stretch
 * between special tokens. *out is NUL-terminated UTF-8 (caller frees). */
int sdt_tokenizer_normalize(const char *text, size_t len, char **out, char **error);

int32_t sdt_tokenizer_bos(const sdt_tokenizer *tok);
int32_t sdt_tokenizer_eos(const sdt_tokenizer *tok);
/* The number of distinct ids in the vocabulary (49408 for CLIP). */
size_t sdt_tokenizer_vocab_size(const sdt_tokenizer *tok);
/* The vocabulary string of an id (byte symbols as in vocab.json), or NULL for an unknown id. */
const char *sdt_tokenizer_token(const sdt_tokenizer *tok, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
