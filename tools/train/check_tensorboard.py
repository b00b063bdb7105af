#!/usr/bin/env python3
"""Reads the event files sdtune's TensorBoard writer produces with the tensorboard package's own reader.

Developer-only: runs the test_tensorboard binary with SDTUNE_TB_KEEP set so it leaves its files in a
temporary folder, then reads their records with tensorboard's RawEventFileLoader (which checks the record
CRCs), parses each with tensorboard's own Event protobuf and compares the scalars with what the test
wrote. (EventFileLoader would migrate simple_value into a tensor; the raw reader shows the file as is.)

    /work/golden-venv/bin/python tools/train/check_tensorboard.py /tmp/b-NAME/bin/test_tensorboard
"""
import glob
import os
import subprocess
import sys
import tempfile

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2

# (tag, step, value) in the order test_scalars_round_trip writes them.
EXPECTED = [("loss/current", 1, 0.125), ("lr/unet", 1, 1e-4), ("loss/current", 300, -2.5),
            ("big_step", 5000000000, 3.0)]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as keep:
        subprocess.run([sys.argv[1]], check=True, env=dict(os.environ, SDTUNE_TB_KEEP=keep),
                       stdout=subprocess.DEVNULL)
        files = sorted(glob.glob(os.path.join(keep, "logs", "run1", "events.out.tfevents.*")))
        if len(files) != 2:
            sys.exit(f"expected 2 event files, found {files}")
        seen = []
        versions = 0
        for path in files:
            for record in RawEventFileLoader(path).Load():
                event = event_pb2.Event.FromString(record)
                if event.HasField("file_version"):
                    versions += 1
                    assert event.file_version == "brain.Event:2", event.file_version
                for value in event.summary.value:
                    seen.append((value.tag, event.step, value.simple_value))
        if versions != 2:
            sys.exit(f"expected a file_version event per file, found {versions}")
        if len(seen) != len(EXPECTED):
            sys.exit(f"expected {EXPECTED}, read {seen}")
        for (tag, step, value), (etag, estep, evalue) in zip(seen, EXPECTED):
            if tag != etag or step != estep or abs(value - evalue) > 1e-6 * max(1.0, abs(evalue)):
                sys.exit(f"expected {EXPECTED}, read {seen}")
        print(f"ok: {len(files)} files, {len(seen)} scalars read back by tensorboard: {seen}")


if __name__ == "__main__":
    main()
