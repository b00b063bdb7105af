/* Sample images during training: the prompts file re-read every round, the LoRA in inference mode, seeds
 * of prompts without --d from a generator keyed by the step (the training generator is not touched), PNGs
 * in <output_dir>/sample/ under kohya's names, one sample event each. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "sample.h"
#include "trainer_internal.h"

int sdt_trainer_sample(sdt_trainer *t, int at_epoch, int64_t number, char **error)
{
    const char *file = t->s.sample_prompts;
    if (!file || !*file)
        return 0;
    sdt_sample_defaults d = {.width = 512, .height = 512, .steps = 30, .scale = 7.5f};
    d.width = t->data.resolution[0];
    d.height = t->data.resolution[1];
    if (sdt_sampler_parse(t->s.sample_sampler, &d.sampler, error) != 0)
        return -1;
    sdt_sample_prompts prompts = {0};
    if (sdt_sample_prompts_load(file, &d, &prompts, error) != 0)
        return -1;
    char *dir = sdt_format("%s/sample", t->output_dir);
    if (!dir || (mkdir(dir, 0755) != 0 && errno != EEXIST)) {
        sdt_set_error(error, "cannot create %s: %s", dir ? dir : "the sample folder", strerror(errno));
        free(dir);
        sdt_sample_prompts_free(&prompts);
        return -1;
    }
    sdt_trainer_phase(t, SDT_PHASE_SAMPLING);
    if (t->has_lora)
        sdt_lora_set_training(&t->lora, 0, 0);
    sdt_sample_models m = {.e = t->e,
                           .unet = t->unet,
                           .text = t->texts,
                           .vae = t->vae,
                           .clip_skip = t->clip_skip,
                           .max_token_length = t->max_token_length,
                           .prediction = t->prediction,
                           .zero_terminal_snr = t->schedule.zero_terminal_snr};
    sdt_rng seeds;
    sdt_rng_init(&seeds, t->seed, 0x53414d504c45ULL + (uint64_t)t->global_step); /* "SAMPLE" + step */
    int rc = 0;
    for (size_t i = 0; i < prompts.count && rc == 0; i++) {
        const sdt_sample_prompt *p = &prompts.items[i];
        uint64_t seed = p->seed >= 0 ? (uint64_t)p->seed : (sdt_rng_u64(&seeds) & 0xffffffffULL);
        sdt_sampler_kind sampler = p->has_sampler ? p->sampler : d.sampler;
        sdt_rgb_image img = {0};
        rc = sdt_sample_generate(&m, p, sampler, seed, &img, error);
        if (rc != 0)
            break;
        char *name = sdt_sample_file_name(t->output_name, at_epoch, number, (int)i, (int64_t)time(NULL),
                                          p->seed >= 0 ? p->seed : -1);
        char *path = name ? sdt_format("%s/%s", dir, name) : NULL;
        if (!path)
            rc = sdt_set_error(error, "out of memory");
        else
            rc = sdt_sample_write_png(path, &img, p, sampler, seed, t->global_step, error);
        if (rc == 0) {
            sdt_event ev = {.type = SDT_EV_SAMPLE};
            ev.sample.path = path;
            ev.sample.prompt = p->prompt;
            ev.sample.step = t->global_step;
            ev.sample.index = (int)i;
            ev.time = (double)time(NULL);
            if (t->o->emit)
                t->o->emit(t->o->emit_ctx, &ev);
            sdt_trainer_add_output(t, path);
        }
        free(name);
        free(path);
        sdt_rgb_image_free(&img);
    }
    sdt_sample_prompts_free(&prompts);
    free(dir);
    return rc;
}
