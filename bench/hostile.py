"""What ``bench.attack`` sends: requests on a raw socket (chunked bodies, a declared length
the client never sends) and odd files built in code (huge DICOM and PNG, a header-only DICOM, a
bomb, a strip, an animation)."""

from __future__ import annotations

import io
import json
import select
import socket
from collections.abc import Iterator

import numpy as np
from PIL import Image

MB = 2**20


def raw_chunked(port: int, path: str, content_type: str, chunks: Iterator[bytes]) -> tuple:
    """POST ``chunks`` with chunked transfer encoding on a raw socket, stopping as soon as the
    server answers; (status, sentence, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        "X-Forwarded-For: 10.9.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sock.sendall(head.encode())
    sent = 0
    try:
        for chunk in chunks:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            if select.select([sock], [], [], 0)[0]:
                break
        else:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    except OSError:
        pass
    sock.close()
    if not data:
        return None, "connection closed without an answer", sent
    status = int(data.split(b" ", 2)[1])
    body = data.split(b"\r\n\r\n", 1)[1]
    try:
        sentence = json.loads(body).get("error", "")
    except ValueError:
        sentence = body[:200].decode("utf-8", "replace")
    return status, sentence, sent


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def zeros(total: int, chunk: int = MB) -> Iterator[bytes]:
    block = b"\0" * chunk
    for _ in range(total // chunk):
        yield block


def multipart(total: int) -> Iterator[bytes]:
    yield b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
    yield from zeros(total)


def big_dicom() -> bytes:
    """A 7000×7000 16-bit RLE DICOM of about 1.5 MB (rows of one value compress well)."""
    from pydicom.uid import RLELossless

    from tests.dicom_files import dicom_bytes

    rows = (np.arange(7000, dtype=np.uint16) // 8 % 4096)[:, None]
    return dicom_bytes(np.repeat(rows, 7000, axis=1), transfer_syntax=RLELossless)


def big_png() -> bytes:
    rows = (np.arange(7000, dtype=np.uint16) // 8 % 4096)[:, None]
    buf = io.BytesIO()
    Image.fromarray(np.repeat(rows, 7000, axis=1)).save(buf, format="PNG")
    return buf.getvalue()


def raw_length(port: int, length: int) -> tuple:
    """An upload that declares ``length`` bytes and sends 1 MB of them."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(
        (
            "POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 10.9.0.2\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\r\n"
        ).encode()
        + b"\0" * MB
    )
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        more = sock.recv(65536)
        if not more:
            break
        data += more
    sock.close()
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1]).get("error", "")


def legit_image() -> bytes:
    from pipeline.data import synth

    image = synth.render_phantom(np.random.default_rng(7), 256, False).image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def dicom_header_only() -> bytes:
    from pydicom import dcmread

    from tests.dicom_files import dicom_bytes

    ds = dcmread(io.BytesIO(dicom_bytes(np.zeros((64, 64), np.uint16))))
    for tag in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation", "PixelData"):
        delattr(ds, tag)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, format="PNG")
    return buf.getvalue()


def strip_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (100_000, 8), 128).save(buf, format="PNG")
    return buf.getvalue()


def animated_gif() -> bytes:
    from pipeline.data import synth

    rng = np.random.default_rng(3)
    frames = [Image.fromarray(synth.render_phantom(rng, 256, False).image) for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()
