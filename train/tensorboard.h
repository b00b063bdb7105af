/* TensorBoard event files, as the accelerate "tensorboard" tracker writes them (through
 * torch.utils.tensorboard): events.out.tfevents.<unix time>.<host>.<pid>.<n> in a folder, a sequence of
 * records (uint64 length, masked CRC32C of the length, an Event protobuf, masked CRC32C of the data), the
 * first Event carrying file_version "brain.Event:2" and then one Event per scalar. See docs/training.md. */
#ifndef SDTUNE_TRAIN_TENSORBOARD_H
#define SDTUNE_TRAIN_TENSORBOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdt_tb_writer sdt_tb_writer;

/* Creates folder (and its parents) when missing and a new event file in it; the file_version event is
 * written at once, so TensorBoard lists the run from the start. Returns the writer, or NULL with *error set
 * naming the folder or the file (caller frees). */
sdt_tb_writer *sdt_tb_open(const char *folder, char **error);

/* The event file's path (owned by the writer). */
const char *sdt_tb_path(const sdt_tb_writer *w);

/* Queues one scalar (wall time = now) in memory; nothing reaches the file before sdt_tb_flush. Returns 0,
 * or -1 when out of memory (the scalar is dropped; the next flush reports it). */
int sdt_tb_scalar(sdt_tb_writer *w, const char *tag, int64_t step, double value);

/* Appends the queued events to the file (the trainer calls it after each step's scalars). The file is
 * append-only: a crash can cut the last record short, which TensorBoard's reader skips. Returns 0, or -1
 * with *error naming the file. */
int sdt_tb_flush(sdt_tb_writer *w, char **error);

/* Flushes, fsyncs and closes; frees w (NULL is fine). Returns 0, or -1 with *error naming the file. */
int sdt_tb_close(sdt_tb_writer *w, char **error);

/* CRC32C (Castagnoli) and the masked form TFRecord files store. Exposed for the tests' reader. */
uint32_t sdt_crc32c(const void *data, size_t len);
uint32_t sdt_tb_masked_crc(const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
