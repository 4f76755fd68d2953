#!/usr/bin/env python3
"""Tiles an image to a mosaic of at least N x N pixels (the benches' large
case: bench/retina.sh --tile-to, bench/crown.sh --tile-to).

  mosaic.py SRC.png OUT.png N
"""
import sys

from PIL import Image

src = Image.open(sys.argv[1]).convert("RGB")
n = int(sys.argv[3])
nx, ny = -(-n // src.width), -(-n // src.height)
out = Image.new("RGB", (nx * src.width, ny * src.height))
for j in range(ny):
    for i in range(nx):
        out.paste(src, (i * src.width, j * src.height))
out.save(sys.argv[2])
