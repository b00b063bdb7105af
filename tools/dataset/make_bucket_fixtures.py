#!/usr/bin/env python3
"""Writes tests/data/dataset/buckets.jsonl: kohya sd-scripts' aspect-ratio bucketing, reimplemented here in
plain Python from its description (make_bucket_resolutions, BucketManager.select_bucket, get_crop_ltrb,
the centre crop of trim_and_resize_if_required), applied to a fixed set of settings and image sizes.
tests/dataset/test_buckets.c compares dataset/buckets.c with every value.

Python's own arithmetic (float division, int(x + 0.5), float floor division) is what kohya uses, so the
values are kohya's. No kohya install and no third-party package needed.

Usage: python3 tools/dataset/make_bucket_fixtures.py [--out tests/data/dataset/buckets.jsonl]
"""
import argparse
import json
import math
import os
import random


def adjust_min_max(min_reso, max_reso, steps):
    if min_reso % steps != 0:
        min_reso = min_reso - min_reso % steps
    if max_reso % steps != 0:
        max_reso = max_reso + steps - max_reso % steps
    return min_reso, max_reso


def bucket_resolutions(width, height, min_reso, max_reso, steps):
    area = width * height
    resos = set()
    side = int(math.sqrt(area) // steps) * steps
    resos.add((side, side))
    w = min_reso
    while w <= max_reso:
        h = min(max_reso, int((area // w) // steps) * steps)
        if h >= min_reso:
            resos.add((w, h))
            resos.add((h, w))
        w += steps
    return sorted(resos)


def round_to_steps(x, steps):
    x = int(x + 0.5)
    return x - x % steps


def select(settings, predefined, iw, ih):
    """(bucket, resized, ar_error) as kohya's select_bucket computes them."""
    ar = iw / ih
    if not settings["bucket_no_upscale"]:
        reso = (iw, ih)
        if reso not in set(predefined):
            errors = [abs(w / h - ar) for w, h in predefined]
            reso = predefined[errors.index(min(errors))]  # the first minimum, like numpy's argmin
        if ar > reso[0] / reso[1]:
            scale = reso[1] / ih
        else:
            scale = reso[0] / iw
        resized = (int(iw * scale + 0.5), int(ih * scale + 0.5))
    else:
        steps = settings["steps"]
        max_area = settings["width"] * settings["height"]
        if iw * ih > max_area:
            rw = math.sqrt(max_area * ar)
            rh = max_area / rw
            bw_r = round_to_steps(rw, steps)
            bh_in_wr = round_to_steps(bw_r / ar, steps)
            bh_r = round_to_steps(rh, steps)
            bw_in_hr = round_to_steps(bh_r * ar, steps)
            if bh_in_wr == 0 or bh_r == 0:
                return None
            if abs(bw_r / bh_in_wr - ar) < abs(bw_in_hr / bh_r - ar):
                resized = (bw_r, int(bw_r / ar + 0.5))
            else:
                resized = (int(bh_r * ar + 0.5), bh_r)
        else:
            resized = (iw, ih)
        reso = (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps)
        if reso[0] == 0 or reso[1] == 0:
            return None
    return reso, resized, reso[0] / reso[1] - ar


def crop_ltrb(bucket, size):
    bucket_ar = bucket[0] / bucket[1]
    image_ar = size[0] / size[1]
    if bucket_ar > image_ar:
        rw, rh = bucket[1] * image_ar, bucket[1]
    else:
        rw, rh = bucket[0], bucket[0] / image_ar
    left = (bucket[0] - rw) // 2
    top = (bucket[1] - rh) // 2
    return [float(left), float(top), float(left + rw), float(top + rh)]


SETTINGS = [
    # (name, width, height, min, max, steps, no_upscale)
    ("sd15-512", 512, 512, 256, 1024, 64, False),
    ("sd15-512-steps32", 512, 512, 256, 1024, 32, False),
    ("sd15-512-narrow", 512, 512, 384, 768, 64, False),
    ("sd15-512x768", 512, 768, 256, 1024, 64, False),
    ("sd2-768", 768, 768, 256, 1280, 64, False),
    ("sd2-768-odd-minmax", 768, 768, 300, 1200, 64, False),
    ("sdxl-1024", 1024, 1024, 256, 2048, 64, False),
    ("sdxl-1024-steps32", 1024, 1024, 512, 2048, 32, False),
    ("sd15-512-noup", 512, 512, 256, 1024, 64, True),
    ("sdxl-1024-noup", 1024, 1024, 256, 2048, 32, True),
    ("sd2-768-noup", 768, 768, 256, 1024, 64, True),
]


def image_sizes(seed=1234):
    sizes = [
        (512, 512), (768, 768), (1024, 1024), (640, 384), (384, 640), (896, 1152), (1152, 896),
        (1, 1), (7, 3), (64, 64), (63, 65), (100, 50), (50, 100), (256, 256), (255, 257),
        (1920, 1080), (1080, 1920), (4000, 3000), (3000, 4000), (6000, 4000), (8192, 8192),
        (10000, 100), (100, 10000), (4096, 64), (64, 4096), (3000, 200), (200, 3000),
        (513, 512), (512, 513), (511, 512), (1000, 999), (2048, 1024), (1024, 2048), (832, 1216),
        (1216, 832), (1344, 768), (768, 1344), (1536, 640), (640, 1536), (704, 1408), (1408, 704),
        (2000, 2000), (3840, 2160), (2160, 3840), (1280, 720), (720, 1280), (320, 240), (240, 320),
        (12000, 9000), (5000, 300), (300, 5000), (1023, 1025), (999, 333), (333, 999),
    ]
    # every bucket of the common lists, exactly
    for w, h, lo, hi, st in ((512, 512, 256, 1024, 64), (1024, 1024, 256, 2048, 64), (768, 768, 256, 1280, 64)):
        sizes += bucket_resolutions(w, h, lo, hi, st)
    rng = random.Random(seed)
    while len(set(sizes)) < 320:
        kind = rng.random()
        if kind < 0.5:
            sizes.append((rng.randint(200, 4000), rng.randint(200, 4000)))
        elif kind < 0.8:
            short = rng.randint(16, 800)
            sizes.append((short, rng.randint(short, short * 8)) if rng.random() < 0.5
                         else (rng.randint(short, short * 8), short))
        else:
            sizes.append((rng.randint(1, 300), rng.randint(1, 300)))
    seen, out = set(), []
    for s in sizes:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(root, "tests", "data", "dataset", "buckets.jsonl"))
    args = parser.parse_args()

    sizes = image_sizes()
    lines = []
    for name, w, h, lo, hi, steps, noup in SETTINGS:
        lo_a, hi_a = adjust_min_max(lo, hi, steps)
        settings = {"name": name, "width": w, "height": h, "min_bucket_reso": lo, "max_bucket_reso": hi,
                    "steps": steps, "bucket_no_upscale": noup}
        predefined = [] if noup else bucket_resolutions(w, h, lo_a, hi_a, steps)
        record = {"settings": settings, "buckets": [list(r) for r in predefined], "images": []}
        for iw, ih in sizes:
            got = select(settings, predefined, iw, ih)
            if got is None:
                record["images"].append({"size": [iw, ih], "error": True})
                continue
            reso, resized, ar_error = got
            record["images"].append({
                "size": [iw, ih],
                "bucket": list(reso),
                "resized": list(resized),
                "crop": [(resized[0] - reso[0]) // 2, (resized[1] - reso[1]) // 2],
                "crop_ltrb": crop_ltrb(reso, (iw, ih)),
                "ar_error": ar_error,
            })
        lines.append(json.dumps(record, separators=(",", ":")))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {len(SETTINGS)} settings x {len(sizes)} image sizes")


if __name__ == "__main__":
    main()
