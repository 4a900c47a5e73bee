"""An RTSP camera on loopback for the station's tests: what most IP cameras on a line speak.

It answers OPTIONS, DESCRIBE, SETUP and PLAY, and sends its frames as Motion JPEG over RTP (RFC 2435),
interleaved in the RTSP connection (TCP) or as UDP datagrams, whichever the client asks for; each SETUP's
Transport header is kept, so a test can see which one the station chose. ``hang(seconds)`` makes it keep its
connections open and send nothing for that long, as a camera whose encoder hangs does.
"""
from __future__ import annotations

import socket
import struct
import threading
import time

import cv2
import numpy as np

JPEG_420 = 1      # RFC 2435 type: 4:2:0 chroma, which OpenCV's JPEG encoder writes for colour frames by default
IN_BAND_Q = 255   # quantisation tables travel with each frame
MTU = 1400


def scan_of(jpeg: bytes) -> tuple[bytes, bytes]:
    """A baseline JPEG's two quantisation tables (luma, chroma; as DQT holds them) and its entropy-coded scan."""
    tables, at = {}, 2
    while True:
        marker, length = jpeg[at + 1], struct.unpack(">H", jpeg[at + 2:at + 4])[0]
        segment = jpeg[at + 4:at + 2 + length]
        if marker == 0xDB:  # one or more tables: precision/id, then 64 values
            for i in range(0, len(segment), 65):
                tables[segment[i] & 0x0F] = segment[i + 1:i + 65]
        if marker == 0xDA:  # the scan runs to the end of image
            return tables[0] + tables[1], jpeg[at + 2 + length:].removesuffix(b"\xff\xd9")
        at += 2 + length


def rtp_packets(image: np.ndarray, sequence: int, timestamp: int) -> list[bytes]:
    """IMAGE (BGR, sides multiples of 8) as RTP/JPEG packets; the last one carries the marker bit."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    tables, scan = scan_of(jpeg.tobytes())
    height, width = image.shape[:2]
    packets, offset = [], 0
    while offset < len(scan):
        # type-specific 0, the 24-bit fragment offset, type, Q, width and height in blocks of 8
        header = bytes([0]) + struct.pack(">I", offset)[1:] + bytes([JPEG_420, IN_BAND_Q, width // 8, height // 8])
        if offset == 0:
            header += bytes([0, 0]) + struct.pack(">H", len(tables)) + tables
        chunk = scan[offset:offset + MTU - len(header)]
        offset += len(chunk)
        marker = 0x80 if offset >= len(scan) else 0
        rtp = struct.pack(">BBHII", 0x80, marker | 26, (sequence + len(packets)) & 0xFFFF, timestamp & 0xFFFFFFFF, 0x1D)
        packets.append(rtp + header + chunk)
    return packets


class RTSPCamera:
    """Serves FRAMES (BGR arrays) in turn at FPS to every client at rtsp://127.0.0.1:PORT/anything."""

    def __init__(self, frames: list[np.ndarray], fps: float = 10.0):
        self.frames, self.fps = frames, fps
        self.transports: list[str] = []
        self.hung_until = 0.0
        self._closed = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self, seconds: float) -> None:
        self.hung_until = time.monotonic() + seconds

    def close(self) -> None:
        self._closed.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(connection,), daemon=True).start()

    def _session(self, connection: socket.socket) -> None:
        pending, udp_port = b"", None
        try:
            while not self._closed.is_set():
                while b"\r\n\r\n" not in pending:
                    data = connection.recv(4096)
                    if not data:
                        return
                    pending += data
                head, pending = pending.split(b"\r\n\r\n", 1)
                request, *lines = head.decode().split("\r\n")
                method, url, _ = request.split(" ")
                headers = dict(line.split(": ", 1) for line in lines if ": " in line)
                more, body = "", ""
                if method == "OPTIONS":
                    more = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
                elif method == "DESCRIBE":
                    body = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                            "m=video 0 RTP/AVP 26\r\na=control:track1\r\n")
                    more = f"Content-Base: {url.rstrip('/')}/\r\nContent-Type: application/sdp\r\n"
                elif method == "SETUP":
                    transport = headers.get("Transport", "")
                    self.transports.append(transport)
                    if "TCP" in transport:
                        more = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 1\r\n"
                    else:
                        ports = transport.split("client_port=")[1].split(";")[0]
                        udp_port = int(ports.split("-")[0])
                        more = f"Transport: RTP/AVP;unicast;client_port={ports};server_port=9000-9001\r\nSession: 1\r\n"
                elif method == "PLAY":
                    more = "Session: 1\r\nRange: npt=0.000-\r\n"
                connection.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {headers.get('CSeq', '0')}\r\n{more}"
                                   f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
                if method == "PLAY":
                    return self._stream(connection, udp_port)
        except OSError:
            return
        finally:
            connection.close()

    def _stream(self, connection: socket.socket, udp_port: int | None) -> None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if udp_port else None
        sequence, number, began = 0, 0, time.monotonic()
        while not self._closed.is_set():
            if time.monotonic() < self.hung_until:
                time.sleep(0.05)
                continue
            packets = rtp_packets(self.frames[number % len(self.frames)], sequence, int(number * 90000 / self.fps))
            for packet in packets:
                if udp is not None:
                    udp.sendto(packet, ("127.0.0.1", udp_port))
                else:
                    connection.sendall(b"$\x00" + struct.pack(">H", len(packet)) + packet)
            sequence, number = sequence + len(packets), number + 1
            time.sleep(max(0.0, began + number / self.fps - time.monotonic()))
