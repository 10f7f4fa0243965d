#!/usr/bin/env python3
"""Extract the uncompressed ELF vmlinux from an x86 bzImage (gzip, xz or lzma payload).

    extract-vmlinux.py BZIMAGE OUT

QEMU boots an ELF vmlinux through its PVH entry point, which under TCG is ~5 s faster than
the bzImage's real-mode setup plus in-guest decompression. Exits 1 if no payload decompresses
to an ELF file (the caller then boots the bzImage).
"""
import gzip
import lzma
import sys
import zlib

MAGICS = [
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"\x5d\x00\x00", "lzma"),
]


def try_decompress(data, off, kind):
    try:
        if kind == "xz":
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        elif kind == "lzma":
            d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
        else:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(data[off:])
    except (lzma.LZMAError, zlib.error, EOFError):
        return None
    return out if out[:4] == b"\x7fELF" else None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    data = open(src, "rb").read()
    for magic, kind in MAGICS:
        off = data.find(magic)
        while off != -1:
            out = try_decompress(data, off, kind)
            if out:
                with open(dst, "wb") as f:
                    f.write(out)
                print(f"extract-vmlinux: {kind} payload at {off:#x}, {len(out)} bytes", file=sys.stderr)
                return 0
            off = data.find(magic, off + 1)
    print(f"extract-vmlinux: no ELF payload found in {src}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
