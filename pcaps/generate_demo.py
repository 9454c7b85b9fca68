#!/usr/bin/env python3
"""Writes pcaps/demo.pcap: the client traffic the README's demo replays through examples/streaming-dsr.yaml."""
# Deterministic (fixed seed and timestamps): running it again gives the same bytes with the same scapy.
import random
from pathlib import Path

from scapy.all import ARP, IP, IPv6, TCP, UDP, Ether, Raw, wrpcap

PORT_MAC = "02:00:00:00:00:01"
GATEWAY_MAC = "02:00:00:00:00:fe"
L2_VIP, L3_VIP, PORT_ADDRESS = "10.0.1.100", "10.0.1.200", "10.0.1.2"


def client(i):
    return f"192.0.2.{10 + i % 200}", f"02:00:00:00:aa:{i % 256:02x}"


def main():
    rng = random.Random(2026)
    frames = []
    # HTTPS sessions to the L2 VIP: handshake, a small request, the client's ACKs of a large response.
    for i in range(40):
        ip, mac = client(i)
        sport = 40000 + i
        base = Ether(src=mac, dst=PORT_MAC) / IP(src=ip, dst=L2_VIP, id=rng.randrange(65536))
        frames.append(base / TCP(sport=sport, dport=443, flags="S", seq=1000, options=[("MSS", 1460)]))
        frames.append(base / TCP(sport=sport, dport=443, flags="A", seq=1001, ack=5001))
        frames.append(base / TCP(sport=sport, dport=443, flags="PA", seq=1001, ack=5001) / Raw(b"\x17\x03\x03" + bytes(200)))
        frames.append(base / TCP(sport=sport, dport=443, flags="A", seq=1204, ack=65001))
    # Video over UDP to the L3 VIP (any port), a few packets per stream; two too big to tunnel at MTU 1500.
    for i in range(30):
        ip, mac = client(100 + i)
        for _ in range(3):
            frames.append(Ether(src=mac, dst=PORT_MAC) / IP(src=ip, dst=L3_VIP, tos=0xB8)
                          / UDP(sport=50000 + i, dport=rng.choice([5004, 8801, 3478])) / Raw(bytes(rng.randrange(40, 400))))
    for size in (1480, 1490):
        frames.append(Ether(src="02:00:00:00:aa:fe", dst=PORT_MAC) / IP(src="192.0.2.250", dst=L3_VIP, flags="DF")
                      / UDP(sport=50999, dport=5004) / Raw(bytes(size - 28)))
    # The gateway asks for the VIPs and the port address.
    for target in (L2_VIP, L3_VIP, PORT_ADDRESS):
        frames.append(Ether(src=GATEWAY_MAC, dst="ff:ff:ff:ff:ff:ff")
                      / ARP(op=1, hwsrc=GATEWAY_MAC, psrc="10.0.1.1", pdst=target))
    # Traffic that is not for a VIP: IPv6, another host, a corrupted header.
    frames.append(Ether(src="02:00:00:00:aa:01", dst=PORT_MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP())
    frames.append(Ether(src="02:00:00:00:aa:02", dst=PORT_MAC) / IP(src="192.0.2.7", dst="10.0.1.50") / TCP(dport=22))
    bad = bytearray(bytes(Ether(src="02:00:00:00:aa:03", dst=PORT_MAC) / IP(src="192.0.2.8", dst=L2_VIP) / TCP(dport=443)))
    bad[24] ^= 0xFF  # IPv4 header checksum
    frames.append(Ether(bytes(bad)))
    rng.shuffle(frames)
    for i, frame in enumerate(frames):
        frame.time = 1700000000 + i * 0.001
    out = Path(__file__).resolve().parent / "demo.pcap"
    wrpcap(str(out), frames, linktype=1)
    print(f"{out}: {len(frames)} frames")


if __name__ == "__main__":
    main()
