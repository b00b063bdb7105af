#!/usr/bin/env python3
"""Writes the hand-made malformed safetensors files of malformed/ (one broken rule each).

Run once; its outputs are committed, and tests/unit/test_safetensors.c keeps the table of which message
each file must produce. Only the standard library: the point is that every byte here is built by hand from
the format description (an 8-byte little-endian header length, the JSON header, the data buffer), not by a
safetensors library that might refuse to write them.

    python3 tests/data/safetensors/make_malformed.py
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "malformed")


def f32(*values):
    """Little-endian f32 bytes."""
    return struct.pack("<%df" % len(values), *values)


def st(header, data=b"", length=None):
    """A file: header length (the real one unless length is given), header bytes, data bytes."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def entry(dtype, shape, begin, end, extra=""):
    """One tensor entry as compact JSON text, optionally with extra raw fields appended."""
    dims = ",".join(str(d) for d in shape)
    return '{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]%s}' % (dtype, dims, begin, end, extra)


FILES = {
    # 8.3: shorter than the 8-byte length field.
    "too_short": b"\x08\x00\x00",
    # 8.3: header length above 100,000,000.
    "header_too_large": st(b"{}      ", length=100_000_001),
    # 8.3: 8 + N beyond the end of the file.
    "header_past_end": st(b"{}      ", length=64),
    # An empty header cannot begin with '{'.
    "header_empty": st(b""),
    # 8.3: the header is not UTF-8 (0xff never is).
    "header_bad_utf8": st(b'{"a\xff":' + entry("F32", [1], 0, 4).encode() + b"}", f32(1.0)),
    # The header must begin with '{': an array is not an object.
    "header_not_object": st('[{"dtype":"F32"}]', b""),
    # Leading whitespace is not allowed either.
    "header_leading_space": st(' {"a":' + entry("F32", [1], 0, 4) + "}", f32(1.0)),
    # Not JSON at all after the '{'.
    "header_not_json": st('{"a": }', b""),
    # Padding must be spaces: NUL bytes after the object are not JSON.
    "header_nul_padding": st(('{"a":' + entry("F32", [1], 0, 4) + "}").encode() + b"\x00\x00\x00", f32(1.0)),
    # A number jansson cannot hold (beyond 64 bits) is a JSON error.
    "header_huge_integer": st('{"a":' + entry("F32", [99999999999999999999], 0, 4) + "}", f32(1.0)),
    # Wrong field types.
    "entry_not_object": st('{"a":[1,2]}'),
    "dtype_not_string": st('{"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}', f32(1.0)),
    "shape_not_array": st('{"a":{"dtype":"F32","shape":"2,2","data_offsets":[0,16]}}', f32(1, 2, 3, 4)),
    "offsets_not_pair": st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}', f32(1.0)),
    # A missing field.
    "missing_field": st('{"w":{"dtype":"F32","shape":[1]}}', f32(1.0)),
    # An unknown field inside an entry.
    "unknown_field": st('{"w":' + entry("F32", [1], 0, 4, ',"dtyp":"F16"') + "}", f32(1.0)),
    # An unknown dtype string.
    "unknown_dtype": st('{"w":' + entry("F33", [1], 0, 4) + "}", f32(1.0)),
    # Shape dimensions: negative, not integers, above 2^48 - 1, too many.
    "shape_negative": st('{"w":' + entry("F32", [2, -1], 0, 8) + "}", f32(1, 2)),
    "shape_not_integer": st('{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}', f32(1, 2)),
    "shape_too_large": st('{"w":' + entry("U8", [281474976710656], 0, 0) + "}"),
    "too_many_dims": st('{"w":' + entry("F32", [1] * 9, 0, 4) + "}", f32(1.0)),
    # The element count overflows 64 bits (each dimension is allowed on its own).
    "count_overflow": st('{"w":' + entry("U8", [281474976710655, 281474976710655], 0, 0) + "}"),
    # Sub-byte dtypes must fill whole bytes: 3 x 4 bits = 12 bits.
    "subbyte_partial": st('{"w":' + entry("F4", [3], 0, 2) + "}", b"\x00\x00"),
    # END - BEGIN does not match the dtype and shape.
    "size_mismatch": st('{"down.weight":' + entry("F32", [2, 2], 0, 12) + "}", f32(1, 2, 3)),
    # Offsets that do not tile the data buffer.
    "offsets_not_from_zero": st('{"a":' + entry("F32", [1], 4, 8) + "}", f32(0, 1)),
    "offsets_gap": st('{"a":' + entry("F32", [1], 0, 4) + ',"b":' + entry("F32", [1], 8, 12) + "}",
                      f32(1, 0, 2)),
    "offsets_overlap": st('{"a":' + entry("F32", [2], 0, 8) + ',"b":' + entry("F32", [2], 4, 12) + "}",
                          f32(1, 2, 3)),
    "offsets_reversed": st('{"a":' + entry("F32", [1], 8, 4) + "}", f32(1, 2, 3)),
    "offsets_negative": st('{"a":' + entry("F32", [1], -4, 0) + "}", f32(1.0)),
    "offsets_too_large": st('{"a":' + entry("U8", [1], 0, 281474976710656) + "}", b"\x01"),
    # The data buffer does not end exactly at the end of the file.
    "trailing_bytes": st('{"a":' + entry("F32", [1], 0, 4) + "}", f32(1.0) + b"\x00\x00"),
    "data_truncated": st('{"a":' + entry("F32", [4], 0, 16) + "}", f32(1, 2)),
    # Duplicate tensor names (most JSON parsers keep the last one silently).
    "duplicate_name": st('{"a":' + entry("F32", [1], 0, 4) + ',"a":' + entry("F32", [1], 4, 8) + "}",
                         f32(1, 2)),
    # __metadata__ must be an object of strings.
    "metadata_not_object": st('{"__metadata__":["x"],"a":' + entry("F32", [1], 0, 4) + "}", f32(1.0)),
    "metadata_not_string": st('{"__metadata__":{"steps":1000},"a":' + entry("F32", [1], 0, 4) + "}",
                              f32(1.0)),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(FILES.items()):
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
    print("wrote %d files to %s" % (len(FILES), OUT))


if __name__ == "__main__":
    main()
