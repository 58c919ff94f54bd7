#!/usr/bin/env python3
"""Cuts the BGP messages out of a tcpdump capture of one BGP session and writes one file per
message: <sender>_<index>_<type>.bin (sender: frr = 192.0.2.1, gobgp = 192.0.2.2), plus
INDEX.txt listing them. Repeated KEEPALIVEs are written once per sender."""
import struct
import sys
from pathlib import Path

TYPES = {1: "open", 2: "update", 3: "notification", 4: "keepalive", 5: "route_refresh"}
SENDERS = {"192.0.2.1": "frr", "192.0.2.2": "gobgp"}


def packets(path):
    data = Path(path).read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    pos = 24
    while pos + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        if linktype == 1:  # Ethernet
            if struct.unpack(">H", frame[12:14])[0] != 0x0800:
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked
            ip = frame[16:]
        else:
            raise SystemExit(f"unsupported link type {linktype}")
        if ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        src = ".".join(map(str, ip[12:16]))
        tcp = ip[ihl:total]
        seq = struct.unpack(">I", tcp[4:8])[0]
        off = (tcp[12] >> 4) * 4
        payload = tcp[off:]
        if payload:
            yield src, seq, payload


def main(pcap, outdir):
    streams = {}
    for src, seq, payload in packets(pcap):
        streams.setdefault(src, {})[seq] = payload  # retransmissions overwrite
    out = Path(outdir)
    index = []
    for src, segments in sorted(streams.items()):
        sender = SENDERS.get(src, src.replace(".", "_"))
        stream = bytearray()
        expected = None
        for seq in sorted(segments):
            payload = segments[seq]
            if expected is not None and seq < expected:
                payload = payload[expected - seq:]
            stream += payload
            expected = seq + len(segments[seq])
        pos, n, seen_keepalive = 0, 0, False
        while pos + 19 <= len(stream):
            length = struct.unpack(">H", stream[pos + 16:pos + 18])[0]
            kind = TYPES.get(stream[pos + 18], f"type{stream[pos + 18]}")
            message = bytes(stream[pos:pos + length])
            pos += length
            if kind == "keepalive":
                if seen_keepalive:
                    continue
                seen_keepalive = True
            name = f"{sender}_{n:02}_{kind}.bin"
            (out / name).write_bytes(message)
            index.append(f"{name}  {length:4} bytes  {message[19:51].hex()}")
            n += 1
    (out / "INDEX.txt").write_text("\n".join(index) + "\n")
    print("\n".join(index))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
