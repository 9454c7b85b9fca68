#!/usr/bin/env python3
# Soak test: mixed traffic and a control change every second against a live appliance for N minutes; mbufs, RSS, fds over time.
#
# Standard library only (it runs under whatever python3 is first on PATH): frames are built with struct.
#
#   scripts/soak.py --minutes 30 [--binary PATH] [--out DIR] [--rate FPS]      (root; `make soak MINUTES=30`)
#   scripts/soak.py clean      removes what a soak killed with SIGKILL left (every run also does this first)
#
# It creates a network namespace tula-soak-<pid> holding a veth pair t0/s0, runs `tula-appliance run` in it on
# net_af_packet0,iface=t0 (config, stats socket and logs in a private temp dir, EAL file prefix tula-soak-<pid>), and
# re-runs itself as `soak.py send` in the namespace: a sender that writes a fixed mix of frames into s0 through an
# AF_PACKET socket at a fixed rate. Every second the main process makes one control change (set-weight, add-backend and
# remove-backend of a spare backend, and every 10 s a `reload` of a rewritten config file); every --sample seconds it
# samples mbufs in use, the appliance's RSS and open fds and its counters. At the end it stops the traffic, samples the
# idle values, stops the appliance (SIGINT: final JSON summary), tears everything down and prints (and writes to --out)
# a report and a CSV of the samples, ending with PASS or FAIL and the reasons. Exit status 0 on PASS, 1 on FAIL, 2 when
# the soak could not run at all (not root, no `ip`, no binary, the appliance did not start), 130/143 when interrupted.

import argparse
import csv
import datetime
import glob
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

PREFIX = "tula-soak"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# ---------------------------------------------------------------------------------------------------------------------
# The segment: addresses and MACs (documentation ranges and locally administered MACs; nothing leaves the namespace)

PORT_MAC = "02:00:00:00:00:01"
PORT_ADDRESS = "10.0.1.2"
GATEWAY = "10.0.1.1"
GATEWAY_MAC = "02:00:00:00:00:fe"
SENDER_MAC = "02:00:00:00:aa:01"
VIP_TCP_L2 = "10.0.1.100"     # web-l2: tcp/80, l2, three backends (10.0.1.11-13) and the spare 10.0.1.19 by ctl
VIP_UDP_L2 = "10.0.1.101"     # udp-l2: udp/*, l2 (fragments go to the * VIP)
VIP_TCP_L3 = "10.0.1.200"     # web-l3: tcp/443, l3 via the gateway
VIP_UDP_L3 = "10.0.1.201"     # dns-l3: udp/53, l3 (its address's only UDP VIP: fragments go to it)
VIP_EXTRA = "10.0.1.102"      # extra: tcp/8080, l2, present in every other config file a reload reads
VIP_CHECKED = "10.0.1.103"    # checked: tcp/9000, l2, tcp health checks of two backends on the namespace's lo
CHECK_PORT = 9000
PROBED_FLAPPING = "10.0.4.1"  # its health-check port is open FLAP_SECONDS, closed FLAP_SECONDS, ... (the sender)
PROBED_DOWN = "10.0.4.2"      # nothing listens: always down
FLAP_SECONDS = 10
ARP_ANSWERED = "10.0.1.17"    # an udp-l2 backend without a MAC: the mix carries its ARP replies
ARP_SILENT = "10.0.1.18"      # an udp-l2 backend without a MAC that never answers
NO_VIP = "10.0.1.250"

# Tula's port on t0. net_af_packet (the default, as in scripts/testbed.sh) joins a fanout group that has the kernel
# reassemble IPv4 fragments first (DPDK 22.11 sets PACKET_FANOUT_FLAG_DEFRAG), so Tula sees whole datagrams; net_pcap
# (libpcap, receiving only the frames that come in) hands Tula the pieces as they were sent.
DEVICES = {"af_packet": "net_af_packet0,iface=t0", "pcap": "net_pcap0,rx_iface_in=t0,tx_iface=t0"}
SPARE = ("10.0.1.19", "02:00:00:00:01:19")
DRAINED = "10.0.1.12"         # the web-l2 backend whose weight set-weight cycles through
WEIGHT_CYCLE = [2, 0, 1]      # 0 = drain

# From this many minutes after warm-up on, the least-squares RSS slope must also stay under --rss-limit (shorter spans are
# dominated by page-granular noise of a few hundred KiB: only the end-to-end growth, with --rss-floor, is judged).
SLOPE_MINUTES = 10
# RSS moves in a sawtooth with the reloads (up about 1 MiB, then back, every 20 s): the verdict compares the highest
# values of windows of this many seconds, at the start and the end of the span after warm-up.
RSS_WINDOW = 30

# What the mix must have produced by the end (per verdict name); a verdict missing means the mix did not reach Tula.
EXPECTED_VERDICTS = ["forwarded-l2", "forwarded-l3", "arp-reply", "icmp-reply", "icmp-frag-needed", "arp-ignored",
                     "not-ip", "malformed-ipv6", "not-our-mac", "malformed-ipv4", "bad-ip-checksum", "malformed-l4", "no-vip",
                     "not-tcp-udp", "arp-learned", "unresolved-next-hop"]


def config_text(device, socket_path, variant):
    """The appliance's config. Variant 1 (what every other reload reads) changes the l3 weights and adds VIP `extra`."""
    l3_weights = (1, 1) if variant == 0 else (3, 1)
    text = f"""# Tula soak config (variant {variant}), written by scripts/soak.py.
ports:
  - name: wan
    device: "{device}"
    address: {PORT_ADDRESS}
    mac: {PORT_MAC}
    gateway: {GATEWAY}
    gateway_mac: {GATEWAY_MAC}
    mtu: 1500
workers: 1
flows_per_worker: 65536
flow_idle_timeout: 20
stats_socket: {socket_path}
vips:
  - name: web-l2
    address: {VIP_TCP_L2}
    port: 80
    protocol: tcp
    mode: l2
    backends:
      - {{address: 10.0.1.11, mac: "02:00:00:00:01:11", weight: 1}}
      - {{address: 10.0.1.12, mac: "02:00:00:00:01:12", weight: 1}}
      - {{address: 10.0.1.13, mac: "02:00:00:00:01:13", weight: 2}}
  - name: udp-l2
    address: {VIP_UDP_L2}
    port: "*"
    protocol: udp
    mode: l2
    backends:
      - {{address: 10.0.1.14, mac: "02:00:00:00:01:14", weight: 1}}
      - {{address: 10.0.1.15, mac: "02:00:00:00:01:15", weight: 1}}
      - {{address: {ARP_ANSWERED}, weight: 1}}        # resolved by ARP: the sender answers for it
      - {{address: {ARP_SILENT}, weight: 1}}        # resolved by ARP: nobody answers (unresolved-next-hop)
  - name: checked
    address: {VIP_CHECKED}
    port: {CHECK_PORT}
    protocol: tcp
    mode: l2
    health_check: {{type: tcp, interval: 1, timeout: 1, rise: 2, fall: 2}}
    backends:
      - {{address: {PROBED_FLAPPING}, mac: "02:00:00:00:04:01", weight: 1}}   # up, down, up... (the sender's listener)
      - {{address: {PROBED_DOWN}, mac: "02:00:00:00:04:02", weight: 1}}       # always refused: down
  - name: web-l3
    address: {VIP_TCP_L3}
    port: 443
    protocol: tcp
    mode: l3
    backends:
      - {{address: 10.0.2.21, weight: {l3_weights[0]}}}
      - {{address: 10.0.2.22, weight: {l3_weights[1]}}}
  - name: dns-l3
    address: {VIP_UDP_L3}
    port: 53
    protocol: udp
    mode: l3
    backends:
      - {{address: 10.0.2.31, weight: 1}}
      - {{address: 10.0.2.32, weight: 1}}
"""
    if variant == 1:
        text += f"""  - name: extra
    address: {VIP_EXTRA}
    port: 8080
    protocol: tcp
    mode: l2
    backends:
      - {{address: 10.0.1.16, mac: "02:00:00:00:01:16", weight: 1}}
"""
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Frames (struct only)

def mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


def ip(text):
    return socket.inet_aton(text)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ether(payload, ethertype=0x0800, dst=PORT_MAC, src=SENDER_MAC, vlan=None):
    header = mac(dst) + mac(src)
    if vlan is not None:
        header += struct.pack("!HH", 0x8100, vlan)
    return header + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, proto, payload, ident=0, df=False, more=False, offset8=0, bad_checksum=False, claim_extra=0):
    """An IPv4 packet; `claim_extra` makes the total length claim that many bytes more than are present."""
    flags = (0x4000 if df else 0) | (0x2000 if more else 0) | offset8
    total = 20 + len(payload) + claim_extra
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, flags, 64, proto, 0, ip(src), ip(dst))
    csum = checksum(header) ^ (0x5A5A if bad_checksum else 0)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def pseudo(src, dst, proto, length):
    return ip(src) + ip(dst) + struct.pack("!BBH", 0, proto, length)


def tcp(src, dst, sport, dport, flags=0x02, payload=b"", offset_words=5):
    header = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, offset_words << 4, flags, 65535, 0, 0)
    csum = checksum(pseudo(src, dst, 6, len(header) + len(payload)) + header + payload)
    return header[:16] + struct.pack("!H", csum) + header[18:] + payload


def udp(src, dst, sport, dport, payload=b""):
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    csum = checksum(pseudo(src, dst, 17, length) + header + payload) or 0xFFFF
    return header[:6] + struct.pack("!H", csum) + payload


def icmp(icmp_type, code, rest, payload):
    header = struct.pack("!BBH", icmp_type, code, 0) + rest
    return header[:2] + struct.pack("!H", checksum(header + payload)) + header[4:] + payload


def arp_request(target, sender_ip="10.0.1.10"):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac(SENDER_MAC), ip(sender_ip), b"\0" * 6, ip(target))
    return ether(body, 0x0806, dst="ff:ff:ff:ff:ff:ff")


class Mix:
    """The traffic mix: one frame per call of `next()`, cycling through a fixed, shuffled schedule of kinds.
    New flows get a new (client address, port) each time; `established` repeats one of the recent flows."""

    # kind -> frames per cycle of 100
    WEIGHTS = {
        "tcp-l2-new": 26, "udp-l2-new": 12, "tcp-l3-new": 10, "udp-l3-new": 5, "established": 15,
        "no-vip-address": 3, "no-vip-port": 2, "bad-checksum": 2, "truncated-ipv4": 2, "bad-tcp-offset": 1,
        "ipv6": 1, "lldp": 1, "not-our-mac": 1, "gre": 1, "vlan-tcp-l2": 1,
        "ping-l2": 1, "ping-l3": 1, "icmp-frag-needed-about-l2": 1, "icmp-time-exceeded-about-l3": 1,
        "fragments": 2, "big-l3-df-clear": 1, "big-l3-df-set": 1,
        "arp-vip": 2, "arp-port": 1, "arp-other": 1, "arp-reply-backend": 2, "tcp-checked-new": 3,
    }

    def __init__(self, seed=1):
        self.schedule = [kind for kind, n in self.WEIGHTS.items() for _ in range(n)]
        random.Random(seed).shuffle(self.schedule)
        self.position = 0
        self.flow = 0
        self.recent = []     # the last flows opened: (builder arguments)
        self.ident = 0

    def _client(self):
        """A new client endpoint: 198.18.0.0/15, source ports 1024..65535."""
        self.flow += 1
        n = self.flow
        return f"198.{18 + (n >> 24 & 1)}.{n >> 16 & 0xFF}.{n >> 8 & 0xFF}", 1024 + (n * 7919) % 64512

    def _remember(self, flow):
        self.recent.append(flow)
        if len(self.recent) > 1024:
            del self.recent[:512]

    def _flow_frame(self, proto, client, sport, vip, dport, payload=b"x" * 32, vlan=None):
        self.ident += 1
        if proto == 6:
            l4 = tcp(client, vip, sport, dport, 0x02 if payload == b"" else 0x18, payload)
        else:
            l4 = udp(client, vip, sport, dport, payload)
        return ether(ipv4(client, vip, proto, l4, ident=self.ident, df=(proto == 6)), vlan=vlan)

    def next(self):
        """The next kind and its frames (one, or the pieces of a fragmented datagram)."""
        kind = self.schedule[self.position]
        self.position = (self.position + 1) % len(self.schedule)
        frames = self.frame(kind)
        return kind, frames if isinstance(frames, list) else [frames]

    def frame(self, kind):
        if kind.endswith("-new"):
            proto = 6 if kind.startswith("tcp") else 17
            vip = {"tcp-l2-new": VIP_TCP_L2, "udp-l2-new": VIP_UDP_L2, "tcp-l3-new": VIP_TCP_L3,
                   "udp-l3-new": VIP_UDP_L3, "tcp-checked-new": VIP_CHECKED}[kind]
            dport = {"tcp-l2-new": 80, "udp-l2-new": 5000 + self.flow % 1000, "tcp-l3-new": 443,
                     "udp-l3-new": 53, "tcp-checked-new": CHECK_PORT}[kind]
            client, sport = self._client()
            self._remember((proto, client, sport, vip, dport))
            return self._flow_frame(proto, client, sport, vip, dport, payload=b"" if proto == 6 else b"q" * 24)
        if kind == "established":
            if not self.recent:
                return self.frame("tcp-l2-new")
            proto, client, sport, vip, dport = self.recent[(self.position * 37) % len(self.recent)]
            return self._flow_frame(proto, client, sport, vip, dport)
        if kind == "vlan-tcp-l2":
            client, sport = self._client()
            return self._flow_frame(6, client, sport, VIP_TCP_L2, 80, vlan=100)
        client, sport = self._client()
        if kind == "no-vip-address":
            return self._flow_frame(6, client, sport, NO_VIP, 80)
        if kind == "no-vip-port":
            return self._flow_frame(6, client, sport, VIP_TCP_L2, 81)
        if kind == "bad-checksum":
            return ether(ipv4(client, VIP_TCP_L2, 6, tcp(client, VIP_TCP_L2, sport, 80), bad_checksum=True))
        if kind == "truncated-ipv4":
            return ether(ipv4(client, VIP_TCP_L2, 6, tcp(client, VIP_TCP_L2, sport, 80), claim_extra=200))
        if kind == "bad-tcp-offset":
            return ether(ipv4(client, VIP_TCP_L2, 6, tcp(client, VIP_TCP_L2, sport, 80, offset_words=15)))
        if kind == "ipv6":  # payload length 0: malformed-ipv6
            return ether(bytes([0x60]) + b"\0" * 39, 0x86DD)
        if kind == "lldp":  # not-ip
            return ether(b"\0" * 46, 0x88CC)
        if kind == "not-our-mac":
            return ether(ipv4(client, VIP_TCP_L2, 6, tcp(client, VIP_TCP_L2, sport, 80)), dst="02:00:00:00:bb:01")
        if kind == "gre":
            return ether(ipv4(client, VIP_TCP_L2, 47, b"\0" * 8))
        if kind in ("ping-l2", "ping-l3"):
            vip = VIP_TCP_L2 if kind == "ping-l2" else VIP_TCP_L3
            return ether(ipv4(client, vip, 1, icmp(8, 0, struct.pack("!HH", 0x50AC, self.flow & 0xFFFF), b"ping" * 8)))
        if kind in ("icmp-frag-needed-about-l2", "icmp-time-exceeded-about-l3"):
            # A router on the client's path reports a backend's response (VIP:port -> client) it could not deliver.
            if kind == "icmp-frag-needed-about-l2":
                vip, vport, icmp_type, code, rest = VIP_TCP_L2, 80, 3, 4, struct.pack("!HH", 0, 1400)
            else:
                vip, vport, icmp_type, code, rest = VIP_TCP_L3, 443, 11, 0, b"\0" * 4
            quoted = ipv4(vip, client, 6, tcp(vip, client, vport, sport, 0x12))[:28]
            return ether(ipv4("203.0.113.1", vip, 1, icmp(icmp_type, code, rest, quoted)))
        if kind == "fragments":
            # A UDP datagram in two pieces (first, later), to the udp * VIP or the l3 UDP VIP (alternately). On
            # net_af_packet the kernel reassembles them before Tula sees them (see the README, Soak).
            vip, dport = (VIP_UDP_L2, 7000) if self.flow % 2 else (VIP_UDP_L3, 53)
            datagram = udp(client, vip, sport, dport, b"f" * 1192)
            self.ident += 1
            return [ether(ipv4(client, vip, 17, datagram[:600], ident=self.ident, more=True)),
                    ether(ipv4(client, vip, 17, datagram[600:], ident=self.ident, offset8=600 // 8))]
        if kind in ("big-l3-df-clear", "big-l3-df-set"):
            # 1490 bytes: + 20 of IP-in-IP exceeds the 1500 MTU: outer fragments (DF clear) or ICMP 3/4 (DF set).
            payload = b"B" * (1490 - 28)
            return ether(ipv4(client, VIP_UDP_L3, 17, udp(client, VIP_UDP_L3, sport, 53, payload),
                              df=(kind == "big-l3-df-set")))
        if kind == "arp-vip":
            return arp_request(VIP_TCP_L2 if self.flow % 2 else VIP_TCP_L3)
        if kind == "arp-port":
            return arp_request(PORT_ADDRESS)
        if kind == "arp-other":
            return arp_request("10.0.1.77")
        if kind == "arp-reply-backend":
            # The answer of an l2 backend without a configured MAC to Tula's ARP request (Tula learns its MAC).
            body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac("02:00:00:00:01:17"), ip(ARP_ANSWERED),
                               mac(PORT_MAC), ip(PORT_ADDRESS))
            return ether(body, 0x0806, src="02:00:00:00:01:17")
        raise ValueError(f"unknown frame kind {kind}")


class FlappingListener:
    """The health-checked backend PROBED_FLAPPING: a TCP listener on the namespace's lo that is open FLAP_SECONDS, then
    closed FLAP_SECONDS, and so on; connections are accepted and closed at once. Polled from the sender's loop."""

    def __init__(self):
        self.sock, self.accepted, self.flaps = None, 0, 0
        self.switch_at = time.monotonic()

    def poll(self):
        now = time.monotonic()
        if now >= self.switch_at:
            if self.sock:
                self.sock.close()
                self.sock = None
            else:
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.sock.bind((PROBED_FLAPPING, CHECK_PORT))
                self.sock.listen(16)
                self.sock.setblocking(False)
            self.flaps += 1
            self.switch_at = now + FLAP_SECONDS
        while self.sock:
            try:
                connection, _ = self.sock.accept()
            except BlockingIOError:
                break
            connection.close()
            self.accepted += 1

    def summary(self):
        return {"accepted": self.accepted, "state_changes": self.flaps}


def send_main(args):
    """`soak.py send`: runs in the namespace; writes the mix into --iface at --rate frames per second until SIGTERM or
    SIGINT, then prints one JSON line: frames sent per kind, and send errors."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    listener = FlappingListener()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)   # protocol 0: send only, receive nothing
    sock.bind((args.iface, 0))
    mix = Mix()
    sent, errors = {}, {}
    tokens, last = 0.0, time.monotonic()
    burst = max(1.0, args.rate / 50)     # 20 ms of frames: a late wake-up is caught up, not lost
    while not stop:
        now = time.monotonic()
        tokens = min(burst, tokens + (now - last) * args.rate)
        last = now
        while tokens >= 1 and not stop:
            tokens -= 1
            kind, frames = mix.next()
            for frame in frames:
                tokens -= 1 if frame is not frames[0] else 0
                try:
                    sock.send(frame)
                    sent[kind] = sent.get(kind, 0) + 1
                except OSError as error:
                    errors[f"{kind}: {error.strerror}"] = errors.get(f"{kind}: {error.strerror}", 0) + 1
        listener.poll()
        time.sleep(0.002)
    print(json.dumps({"sent": sent, "errors": errors, "listener": listener.summary()}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# The soak

class SoakError(Exception):
    """The soak could not run (exit status 2)."""


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def say(text):
    print(f"soak: {text}", flush=True)


def run(cmd, check=True, timeout=30):
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SoakError(f"`{' '.join(cmd)}` failed (exit status {result.returncode}): {result.stderr.strip()}")
    return result


def alive(pid):
    """Whether process `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_process(proc, first=signal.SIGTERM, wait=15):
    """Signals `proc` (a Popen), waits up to `wait` s, then SIGKILLs it. Returns its exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(first)
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def remove_eal_files(prefix):
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[2] == "hugetlbfs"]
    for mount in mounts:
        for path in glob.glob(os.path.join(mount, f"{prefix}map_*")):
            try:
                os.remove(path)
            except OSError:
                pass


def stale(name):
    """Whether `name` (tula-soak-<pid>, maybe with a -suffix) belongs to a soak whose process is gone."""
    rest = name[len(PREFIX) + 1:] if name.startswith(PREFIX + "-") else ""
    pid = rest.split("-")[0]
    return pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid))


def clean_stale():
    """Removes what a soak killed with SIGKILL left: its namespace (and anything still running in it), EAL files,
    temp dir. (Its appliance and sender get SIGTERM when it dies: see `die_with_parent`.)"""
    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if stale(name):
            say(f"removing the namespace {name} of a soak that is gone")
            for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            run(["ip", "netns", "delete", name], check=False)
            remove_eal_files(name)
    for path in glob.glob(f"/var/run/dpdk/{PREFIX}-*"):
        if stale(os.path.basename(path)):
            remove_eal_files(os.path.basename(path))
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}-*")):
        if stale(os.path.basename(path)):
            shutil.rmtree(path, ignore_errors=True)


def die_with_parent():
    """In a child before exec: SIGTERM when the soak dies, even by SIGKILL (prctl PR_SET_PDEATHSIG survives the exec
    of `ip netns exec` and of what it runs)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Soak:
    def __init__(self, args):
        self.args = args
        self.name = f"{PREFIX}-{os.getpid()}"
        self.tmp = None
        self.netns = False
        self.appliance = None
        self.sender = None
        self.samples = []
        self.control = {"ok": 0, "failed": 0, "failures": [], "max_seconds": 0.0, "by_kind": {}}
        self.notes = []

    # --- setup and teardown

    def ns(self, *cmd):
        return ["ip", "netns", "exec", self.name, *cmd]

    def setup(self):
        self.tmp = tempfile.mkdtemp(prefix=f"{self.name}-")
        os.chmod(self.tmp, 0o700)
        self.socket = os.path.join(self.tmp, "tula.sock")
        self.config = os.path.join(self.tmp, "tula.yaml")
        run(["ip", "netns", "add", self.name])
        self.netns = True
        # No IPv6 (the kernel would send router solicitations into the segment); set before the veths exist.
        run(self.ns("sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; "
                                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"), check=False)
        run(self.ns("ip", "link", "add", "t0", "type", "veth", "peer", "name", "s0"))
        for link in ("lo", "t0", "s0"):
            run(self.ns("ip", "link", "set", link, "up"))
        # The health-checked backends live on the namespace's lo: Tula's probes reach them through its kernel.
        for address in (PROBED_FLAPPING, PROBED_DOWN):
            run(self.ns("ip", "addr", "add", f"{address}/32", "dev", "lo"))
        self.write_config(0)
        say(f"namespace {self.name}: veth t0 (tula-appliance, {DEVICES[self.args.driver]}) <-> s0 (sender); "
            f"files in {self.tmp}")

    def write_config(self, variant):
        text = config_text(DEVICES[self.args.driver], self.socket, variant)
        with open(self.config + ".new", "w") as f:
            f.write(text)
        os.replace(self.config + ".new", self.config)

    def keep_log(self):
        """Copies the appliance's stderr to --out (before the temp dir goes), also when the soak failed."""
        log = os.path.join(self.tmp, "tula.log") if self.tmp else None
        if log and os.path.exists(log):
            os.makedirs(self.args.out, exist_ok=True)
            shutil.copyfile(log, os.path.join(self.args.out, "tula.log"))

    def teardown(self):
        for proc in (self.sender, self.appliance):
            stop_process(proc, signal.SIGTERM, wait=10)
        if self.netns:
            for pid in run(["ip", "netns", "pids", self.name], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            run(["ip", "netns", "delete", self.name], check=False)
            self.netns = False
        remove_eal_files(self.name)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # --- the appliance

    def start_appliance(self):
        self.appliance_log = os.path.join(self.tmp, "tula.log")
        self.appliance_out = os.path.join(self.tmp, "tula.json")
        cmd = self.ns(self.args.binary, "run", "--config", self.config, "--json", "--", "--file-prefix", self.name)
        with open(self.appliance_out, "w") as out, open(self.appliance_log, "w") as err:
            # Its own session: a Ctrl-C in the terminal reaches only this script, which stops everything in order.
            self.appliance = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                              start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.appliance.poll() is not None:
                raise SoakError(f"tula-appliance exited with status {self.appliance.returncode} at start: "
                                f"{self.log_tail()}")
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.2)
        raise SoakError(f"tula-appliance did not answer on {self.socket} within 60 s: {self.log_tail()}")

    def log_tail(self, lines=8):
        try:
            with open(self.appliance_log) as f:
                return " | ".join(f.read().strip().splitlines()[-lines:]) or "(nothing on stderr)"
        except OSError:
            return "(no log)"

    def stats(self):
        """One `{"cmd":"stats"}` request on the control socket (the protocol in the README)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.socket)
            s.sendall(b'{"cmd":"stats"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    raise OSError("the control socket closed before answering")
                data += chunk
        answer = json.loads(data)
        if not answer.get("ok"):
            raise OSError(f"stats refused: {answer.get('error')}")
        return answer["stats"]

    def ctl(self, kind, *args):
        start = time.monotonic()
        try:
            result = run([self.args.binary, "ctl", *args, "--socket", self.socket], check=False, timeout=30)
            ok, detail = result.returncode == 0, (result.stderr or result.stdout).strip()
        except subprocess.TimeoutExpired:
            ok, detail = False, "no answer within 30 s"
        took = time.monotonic() - start
        self.control["max_seconds"] = max(self.control["max_seconds"], took)
        self.control["by_kind"][kind] = self.control["by_kind"].get(kind, 0) + 1
        if ok:
            self.control["ok"] += 1
        else:
            self.control["failed"] += 1
            if len(self.control["failures"]) < 10:
                self.control["failures"].append(f"ctl {' '.join(args)}: {detail}")
        return ok

    def control_change(self, tick):
        """Tick n (one a second): every 10th a reload of the other config variant, odd ones set-weight, the rest
        add or remove the spare backend. A reload drops what ctl changed, so the spare is gone after one."""
        if tick % 10 == 0:
            self.variant = 1 - self.variant
            self.write_config(self.variant)
            if self.ctl("reload", "reload"):
                self.spare_present = False
        elif tick % 2:
            weight = WEIGHT_CYCLE[(tick // 2) % len(WEIGHT_CYCLE)]
            self.ctl("set-weight", "set-weight", "--vip", "web-l2", "--address", DRAINED, "--weight", str(weight))
        elif self.spare_present:
            if self.ctl("remove-backend", "remove-backend", "--vip", "web-l2", "--address", SPARE[0]):
                self.spare_present = False
        else:
            if self.ctl("add-backend", "add-backend", "--vip", "web-l2", "--address", SPARE[0], "--mac", SPARE[1],
                        "--weight", "1"):
                self.spare_present = True

    # --- samples

    def fds(self, pid):
        """Open fds of `pid`: the smallest of three counts 50 ms apart (a ctl connection closing is not a leak)."""
        counts = []
        for _ in range(3):
            counts.append(len(os.listdir(f"/proc/{pid}/fd")))
            time.sleep(0.05)
        return min(counts)

    def rss_kib(self, pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise SoakError(f"no VmRSS in /proc/{pid}/status")

    def sample(self, phase):
        pid = self.appliance.pid
        fds = self.fds(pid)            # before the stats connection opens
        rss = self.rss_kib(pid)
        s = self.stats()
        t = time.monotonic() - self.t0
        port = s["ports"][0]
        parts = port["forwarded"] + port["replied"] + port["to_control"] + port["dropped"]
        row = {"phase": phase, "t": round(t, 1), "rx": s["rx_packets"], "tx": s["tx_packets"],
               "mbufs": s.get("mbufs_in_use"), "rss_kib": rss, "fds": fds, "flows": s["flows"]["in_use"],
               "forwarded": port["forwarded"], "replied": port["replied"], "to_control": port["to_control"],
               "dropped": port["dropped"], "unaccounted": port["rx_packets"] - parts,
               "rx_missed": port["device"]["rx_missed"], "evictions": s["flows"]["evictions"],
               "expiries": s["flows"]["expiries"]}
        previous = self.samples[-1] if self.samples else None
        row["pps"] = round((row["rx"] - previous["rx"]) / (t - previous["t"])) if previous and t > previous["t"] else 0
        self.samples.append(row)
        self.last_stats = s
        return row

    def print_row(self, row):
        print(f"  {row['t']:7.1f} s  rx {row['rx']:>10}  {row['pps']:>6} pps  mbufs {row['mbufs']:>5}  "
              f"RSS {row['rss_kib'] / 1024:7.2f} MiB  fds {row['fds']:>3}  flows {row['flows']:>6}  "
              f"{row['phase']}", flush=True)

    def wait_idle(self, settle=2.0, limit=15.0):
        """After the traffic stops: at least `settle` s, then until rx has not moved for a second."""
        time.sleep(settle)
        last, deadline = self.stats()["rx_packets"], time.monotonic() + limit
        while time.monotonic() < deadline:
            time.sleep(1)
            now = self.stats()["rx_packets"]
            if now == last:
                return
            last = now

    # --- the run

    def check_alive(self):
        if self.appliance.poll() is not None:
            raise RuntimeError(f"tula-appliance exited (status {self.appliance.returncode}) during the soak: "
                               f"{self.log_tail()}")
        if self.sender.poll() is not None:
            raise RuntimeError(f"the sender exited (status {self.sender.returncode}): {self.sender.stderr.read()}")

    def run(self):
        args = self.args
        duration = args.minutes * 60
        self.variant, self.spare_present = 0, False
        self.setup()
        self.start_appliance()
        self.t0 = time.monotonic()
        say(f"tula-appliance pid {self.appliance.pid}; {self.stats()['notes'].get('memory', '?')}")
        time.sleep(2)
        self.idle_before = self.sample("idle before traffic")
        self.print_row(self.idle_before)

        say(f"traffic for {args.minutes:g} min at {args.rate:g} frames/s, a control change every second, "
            f"a sample every {args.sample:g} s (warm-up {self.warmup:g} s)")
        self.sender = subprocess.Popen(
            self.ns(sys.executable, os.path.abspath(__file__), "send", "--iface", "s0", "--rate", str(args.rate)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, preexec_fn=die_with_parent)
        start = time.monotonic()
        next_tick, next_sample, tick = start + 1, start + args.sample, 0
        while True:
            now = time.monotonic()
            if now >= start + duration:
                break
            if now >= next_tick:
                tick += 1
                self.control_change(tick)
                next_tick += 1
                if next_tick < time.monotonic():      # fell behind (a slow ctl): skip, do not burst
                    next_tick = time.monotonic() + 1
            if time.monotonic() >= next_sample:
                self.check_alive()
                self.print_row(self.sample("traffic"))
                next_sample += args.sample
            time.sleep(max(0.0, min(next_tick, next_sample, start + duration) - time.monotonic()))
        self.check_alive()
        self.traffic_end = self.sample("end of traffic")
        self.print_row(self.traffic_end)

        stop_process(self.sender, signal.SIGTERM, wait=10)
        out, err = self.sender.communicate()
        self.sent = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"sent": {}, "errors": {"?": err}}
        self.sender = None
        self.wait_idle()
        self.idle_after = self.sample("idle after traffic")
        self.print_row(self.idle_after)

        status = stop_process(self.appliance, signal.SIGINT, wait=30)
        self.exit_status = status
        self.appliance = None
        self.final = None
        with open(self.appliance_out) as f:
            lines = [line for line in f if line.startswith("{")]
        if lines:
            self.final = json.loads(lines[-1])
        with open(self.appliance_log) as f:
            self.stderr_text = f.read()

    # --- the verdict

    def verdict(self):
        a = self.args
        reasons, lines = [], []
        traffic = [r for r in self.samples if r["phase"] in ("traffic", "end of traffic")]
        warm = next((r for r in traffic if r["t"] - self.idle_before["t"] >= self.warmup), traffic[-1] if traffic else None)
        after_warm = [r for r in traffic if r["t"] >= warm["t"]] + [self.idle_after]

        # mbufs
        before, after = self.idle_before["mbufs"], self.idle_after["mbufs"]
        peak = max(r["mbufs"] for r in self.samples)
        final_mbufs = self.final.get("mbufs_in_use") if self.final else None
        lines.append(f"mbufs in use: idle before traffic {before}, peak under traffic {peak}, idle after traffic "
                     f"{after} (margin {a.mbuf_margin}); after stop (final summary) {final_mbufs}")
        if after is None or before is None or after > before + a.mbuf_margin:
            reasons.append(f"mbufs in use did not return to idle: {before} before traffic, {after} after")
        if final_mbufs not in (0, None):
            reasons.append(f"{final_mbufs} mbufs still taken from the pool after stop")
        if self.final is not None and final_mbufs is None:
            reasons.append("the final summary has no mbufs_in_use")

        # fds
        fd_values = sorted({r["fds"] for r in after_warm})
        fd_span_h = (self.idle_after["t"] - warm["t"]) / 3600
        fd_growth = self.idle_after["fds"] - warm["fds"]
        lines.append(f"open fds: idle before {self.idle_before['fds']}, after warm-up ({warm['t']:.0f} s) {warm['fds']}, "
                     f"idle after traffic {self.idle_after['fds']} ({fd_growth:+d}, "
                     f"{fd_growth / fd_span_h if fd_span_h else 0:+.1f} per hour); values seen after warm-up {fd_values}")
        if self.idle_after["fds"] != warm["fds"]:
            reasons.append(f"open fds changed: {warm['fds']} after warm-up, {self.idle_after['fds']} at the end")

        # RSS: it moves in a sawtooth of about 1 MiB with the reloads (period 20 s), so the highest value of the first
        # window after warm-up is compared with the highest of the last one, windows of RSS_WINDOW s (half the span
        # after warm-up when that is shorter).
        end_t = self.idle_after["t"]
        span_h = (end_t - warm["t"]) / 3600
        window = min(RSS_WINDOW, (end_t - warm["t"]) / 2)
        first = max(r["rss_kib"] for r in after_warm if r["t"] <= warm["t"] + window) / 1024
        last = max(r["rss_kib"] for r in after_warm if r["t"] >= end_t - window) / 1024
        growth = last - first
        points = [(r["t"], r["rss_kib"] / 1024) for r in after_warm]
        slope = fit_slope(points) * 3600 if len(points) >= 2 else 0.0
        allowed = max(a.rss_limit * span_h, a.rss_floor)
        lines.append(f"RSS: idle before {self.idle_before['rss_kib'] / 1024:.2f} MiB, highest in the first {window:.0f} s "
                     f"after warm-up {first:.2f} MiB, in the last {window:.0f} s {last:.2f} MiB, idle after "
                     f"{self.idle_after['rss_kib'] / 1024:.2f} MiB; growth {growth * 1024:+.0f} KiB over "
                     f"{span_h * 60:.1f} min = {growth / span_h if span_h else 0:+.2f} MiB/h, fitted slope "
                     f"{slope:+.2f} MiB/h (allowed: {allowed * 1024:.0f} KiB = max({a.rss_limit:g} MiB/h x span, "
                     f"{a.rss_floor * 1024:.0f} KiB){'' if span_h * 60 >= SLOPE_MINUTES else '; slope not judged under ' + str(SLOPE_MINUTES) + ' min'})")
        if growth > allowed:
            reasons.append(f"RSS grew {growth * 1024:.0f} KiB after warm-up ({growth / span_h:.1f} MiB/h; allowed "
                           f"{allowed * 1024:.0f} KiB)")
        elif span_h * 60 >= SLOPE_MINUTES and slope > a.rss_limit:
            reasons.append(f"RSS keeps growing after warm-up: fitted slope {slope:.1f} MiB/h > {a.rss_limit:g} MiB/h")

        # counters
        bad_live = [r for r in traffic if r["unaccounted"] != 0]
        lines.append(f"counters: rx = forwarded + replied + to_control + dropped at idle before "
                     f"({self.idle_before['unaccounted']:+d}), idle after ({self.idle_after['unaccounted']:+d}); "
                     f"under traffic {len(traffic) - len(bad_live)} of {len(traffic)} samples add up exactly"
                     + (f" (largest difference {max(abs(r['unaccounted']) for r in bad_live)}: counters are published "
                        f"per burst, a sample may fall between two)" if bad_live else ""))
        for r in (self.idle_before, self.idle_after):
            if r["unaccounted"] != 0:
                reasons.append(f"counters do not add up at '{r['phase']}': rx - (forwarded + replied + to_control + "
                               f"dropped) = {r['unaccounted']}")
        if self.final:
            for port in self.final["ports"]:
                diff = port["rx_packets"] - (port["forwarded"] + port["replied"] + port["to_control"] + port["dropped"])
                lines.append(f"final summary, port {port['name']}: rx {port['rx_packets']}, forwarded {port['forwarded']}, "
                             f"replied {port['replied']}, to_control {port['to_control']}, dropped {port['dropped']} "
                             f"(difference {diff:+d}); tx {port['tx_packets']}; device {port['device']}")
                if diff:
                    reasons.append(f"final counters of port {port['name']} do not add up ({diff:+d})")
        else:
            reasons.append(f"tula-appliance printed no final summary (exit status {self.exit_status})")
        if self.exit_status != 0:
            reasons.append(f"tula-appliance exited with status {self.exit_status} on SIGINT")

        # traffic and control
        sent_total = sum(self.sent["sent"].values())
        # On af_packet the kernel joins each fragment pair into one datagram before Tula sees it.
        joined = self.sent["sent"].get("fragments", 0) // 2 if a.driver == "af_packet" else 0
        arriving = sent_total - joined
        rx_traffic = self.idle_after["rx"] - self.idle_before["rx"]
        seconds = self.traffic_end["t"] - self.idle_before["t"]
        lines.append(f"traffic: {sent_total} frames sent in {seconds:.0f} s ({sent_total / seconds:.0f}/s; "
                     f"{self.sent['errors'] or 'no send errors'}), "
                     f"{rx_traffic} received of {arriving} that can arrive"
                     f"{f' ({joined} fragment pairs joined by the kernel)' if joined else ''} "
                     f"({100 * rx_traffic / arriving if arriving else 0:.1f}%), "
                     f"rx_missed {self.idle_after['rx_missed']}; flows: peak in use "
                     f"{max(r['flows'] for r in self.samples)}, evictions {self.idle_after['evictions']}, expiries "
                     f"{self.idle_after['expiries']}")
        if arriving <= 0 or rx_traffic < 0.5 * arriving:
            reasons.append(f"traffic did not flow: {rx_traffic} of {arriving} frames received")
        lines.append("sent by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(self.sent["sent"].items())))
        verdicts = (self.final or self.last_stats)["verdicts"]
        missing = [v for v in EXPECTED_VERDICTS if not verdicts.get(v)]
        lines.append("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()) if v))
        if missing:
            reasons.append(f"the mix produced no {', '.join(missing)}")
        c = self.control
        lines.append(f"control changes: {c['ok']} succeeded, {c['failed']} failed "
                     f"({', '.join(f'{k} {n}' for k, n in sorted(c['by_kind'].items()))}); slowest ctl {c['max_seconds']:.2f} s")
        for failure in c["failures"]:
            lines.append(f"  {failure}")
        if c["failed"]:
            reasons.append(f"{c['failed']} control changes failed")
        if c["ok"] == 0:
            reasons.append("no control change was made")
        log = self.stderr_text.splitlines()
        down = sum(1 for l in log if PROBED_FLAPPING in l and "is unhealthy" in l)
        up = sum(1 for l in log if PROBED_FLAPPING in l and "healthy again" in l)
        listener = self.sent.get("listener", {})
        lines.append(f"health checks: {PROBED_FLAPPING} went down {down} and came back {up} times (its listener changed "
                     f"state {listener.get('state_changes', '?')} times, accepted {listener.get('accepted', '?')} probes)")
        if a.minutes * 60 >= 3 * FLAP_SECONDS and up == 0:
            reasons.append(f"the health check never saw {PROBED_FLAPPING} come back")
        if self.final:
            lines.append("neighbours: " + ", ".join(f"{n.get('address')} {n.get('state')}"
                                                    for n in self.final.get("neighbors", [])))
        warnings = [l for l in self.stderr_text.splitlines() if "error" in l.lower() or "leak" in l.lower()]
        if warnings:
            lines.append(f"appliance stderr mentions errors ({len(warnings)} lines), e.g.: {warnings[0]}")
        return reasons, lines

    def write_samples(self):
        """samples.csv in --out (also after a failure, with the samples taken until then)."""
        os.makedirs(self.args.out, exist_ok=True)
        with open(os.path.join(self.args.out, "samples.csv"), "w", newline="") as f:
            fields = ["phase", "t", "rx", "tx", "pps", "mbufs", "rss_kib", "fds", "flows", "forwarded", "replied",
                      "to_control", "dropped", "unaccounted", "rx_missed", "evictions", "expiries"]
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.samples)

    def report(self, reasons, lines):
        a = self.args
        out = []
        out.append(f"Tula soak: {a.minutes:g} min at {a.rate:g} frames/s, {datetime.datetime.now().isoformat(timespec='seconds')}")
        out.append(f"binary {a.binary} ({git_revision()}); port {DEVICES[a.driver]}; {self.last_stats['notes']}")
        out.append("")
        out.append(f"{'time s':>8} {'rx':>10} {'pps':>6} {'mbufs':>6} {'RSS MiB':>8} {'fds':>4} {'flows':>7} "
                   f"{'dropped':>9} {'rx-sum':>6}  phase")
        for r in self.samples:
            out.append(f"{r['t']:8.1f} {r['rx']:10d} {r['pps']:6d} {r['mbufs']:6d} {r['rss_kib'] / 1024:8.2f} "
                       f"{r['fds']:4d} {r['flows']:7d} {r['dropped']:9d} {r['unaccounted']:+6d}  {r['phase']}")
        out.append("")
        out.extend(lines)
        out.append("")
        out.append("VERDICT: PASS" if not reasons else "VERDICT: FAIL: " + "; ".join(reasons))
        text = "\n".join(out) + "\n"
        print()
        print(text, end="", flush=True)
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "report.txt"), "w") as f:
            f.write(text)
        self.write_samples()
        if self.final:
            with open(os.path.join(a.out, "summary.json"), "w") as f:
                json.dump(self.final, f, indent=1, sort_keys=True)
        say(f"report, samples.csv, summary.json and tula.log in {a.out}")


def fit_slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def git_revision():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown revision"
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"


def preflight(args):
    if os.geteuid() != 0:
        raise SoakError("the soak needs root (network namespaces, veth pairs, AF_PACKET, DPDK): run it with sudo")
    if not hasattr(socket, "AF_PACKET"):
        raise SoakError("this Python has no AF_PACKET sockets (Linux only)")
    for tool in ("ip",):
        if not shutil.which(tool):
            raise SoakError(f"`{tool}` is not on PATH (Debian: apt-get install iproute2)")
    if not os.path.isfile(args.binary) or not os.access(args.binary, os.X_OK):
        raise SoakError(f"no executable tula-appliance at {args.binary} (build it with `make release`)")
    if args.minutes <= 0 or args.rate <= 0 or args.sample <= 0:
        raise SoakError("--minutes, --rate and --sample must be positive")


def soak_main(argv):
    parser = argparse.ArgumentParser(prog="soak.py", description="Soak a live tula-appliance (see the README, Soak).")
    parser.add_argument("--minutes", type=float, default=2, help="minutes of traffic (default 2)")
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build-release/release/tula-appliance"),
                        help="tula-appliance to run (default: the release build)")
    parser.add_argument("--out", help="directory for report.txt, samples.csv, summary.json, tula.log "
                                      "(default out/soak/<date-time>)")
    parser.add_argument("--rate", type=float, default=3000, help="frames per second (default 3000)")
    parser.add_argument("--driver", choices=sorted(DEVICES), default="af_packet",
                        help="DPDK driver of Tula's port (default af_packet; pcap delivers IPv4 fragments unreassembled)")
    parser.add_argument("--sample", type=float, default=5, help="seconds between samples (default 5)")
    parser.add_argument("--warmup", type=float, default=60,
                        help="seconds of traffic before the fd and RSS reference (default 60, at most half the run)")
    parser.add_argument("--mbuf-margin", type=int, default=0,
                        help="mbufs in use allowed above the idle value after the traffic (default 0)")
    parser.add_argument("--rss-limit", type=float, default=5.0,
                        help="RSS growth allowed after warm-up, MiB per hour (default 5)")
    parser.add_argument("--rss-floor", type=float, default=1.0,
                        help="RSS growth always allowed after warm-up, MiB (default 1: page-granular noise)")
    args = parser.parse_args(argv)
    args.binary = os.path.abspath(args.binary)
    args.out = os.path.abspath(args.out or os.path.join(
        ROOT, "out", "soak", datetime.datetime.now().strftime("%Y%m%d-%H%M%S")))
    try:
        preflight(args)
    except SoakError as error:
        print(f"soak: error: {error}", file=sys.stderr)
        return 2

    def interrupt(signum, _frame):
        raise Interrupted(signum)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)

    soak = Soak(args)
    soak.warmup = min(args.warmup, args.minutes * 60 / 2)
    try:
        clean_stale()
        soak.run()
        reasons, lines = soak.verdict()
    except Interrupted as stop:
        print(f"\nsoak: {stop}: stopping and cleaning up", file=sys.stderr)
        return 128 + stop.signum
    except SoakError as error:
        print(f"soak: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:                  # the appliance died, the stats socket failed, ...
        print(f"soak: FAIL: {error}", file=sys.stderr)
        if soak.samples:
            soak.write_samples()
            print(f"soak: the samples until then, and tula.log, are in {args.out}", file=sys.stderr)
        return 1
    finally:
        # Nothing may interrupt the cleanup itself.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        soak.keep_log()
        soak.teardown()
    soak.report(reasons, lines)
    return 1 if reasons else 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "send":
        parser = argparse.ArgumentParser(prog="soak.py send")
        parser.add_argument("--iface", required=True)
        parser.add_argument("--rate", type=float, required=True)
        return send_main(parser.parse_args(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "clean":
        if os.geteuid() != 0:
            print("soak: error: cleaning up needs root (network namespaces)", file=sys.stderr)
            return 2
        clean_stale()
        return 0
    return soak_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
