#!/usr/bin/env python3
"""Benign training flows for the base model, from public captures of real application traffic.

Two steps (python3 standard library + git + the `safelink` binary; no capture is committed):

  build.py select   list every capture in the pinned repositories below, decide per capture
                    whether it is benign training data (rules in `decide`), replay the kept
                    ones through `safelink analyze`, and write MANIFEST.tsv (kept),
                    EXCLUDED.tsv (every other capture, with the reason) and flows.csv.gz.
  build.py rows     regenerate flows.csv.gz from MANIFEST.tsv alone (pinned commit, path,
                    sha256 checked); `--check` compares with the committed file instead.
  build.py heldout DIR  write the held-out nDPI and Zeek captures named without an attack
                    word into DIR with a MANIFEST.tsv, for `cargo xtask eval DIR`.
  build.py copies   list kept captures whose flows equal a held-out (nDPI, Zeek) capture's
                    though their bytes differ (re-encoded copies the sha256 check misses;
                    `select` refuses them, so after a select it lists none).

flows.csv.gz: a `capture` column (the 1-based line of MANIFEST.tsv), then the columns of
`safelink analyze --no-dfa --features` (IP version, protocol, ports, the ANN feature vector):
no address, no payload. Gzip without a name or time stamp; the check compares the CSV text.

Repositories come from $SAFELINK_CAPTURE_MIRROR/<owner>+<name>/repo (a bare git directory, as
the search tool's `fetch` leaves it) or are cloned from GitHub into
$SAFELINK_CAPTURE_CACHE (default ~/.cache/safelink-captures) at the pinned commit.
Captures of ntop/nDPI and zeek/zeek (kept for independent evaluation) and the project's own
shared/test/lab captures are refused by content hash (heldout_sha256.txt).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MANIFEST = HERE / "MANIFEST.tsv"
EXCLUDED = HERE / "EXCLUDED.tsv"
ROWS = HERE / "flows.csv.gz"
HELDOUT = HERE / "heldout_sha256.txt"

# repository -> (pinned commit, licence note, selection rule)
REPOS = {
    "aucad/sensor-data": (
        "d3721027ab5bd6eafb5ef740bc685e60061c4716",
        "IoT Sentinel dataset (Aalto University); terms: cite Miettinen et al., ICDCS 2017",
        "iot-sentinel",
    ),
    "tj-oconnor/IoT-Dataset": (
        "af95b305a2a13d082d47824e96bf266e6a8856c4",
        "no licence file; research dataset of Campos et al., CSET 2021 (cite the paper)",
        "all",
    ),
    "OISF/suricata-verify": ("10a45e4bad6d29d0f1239d93119ea24e1bbdab19", "MIT-style (LICENSE.txt, OISF)", "suricata"),
    "the-tcpdump-group/tcpdump": ("39b50f76672bca4af7d7eb52604c5b692c6b6b2c", "BSD (LICENSE)", "keywords"),
    "the-tcpdump-group/libpcap": ("f26ae497fce4cda04355806101dd8d3e851d5672", "BSD (LICENSE)", "keywords"),
    "seladb/PcapPlusPlus": ("200853b3a0b5ea2c443d6bee1a67f9c9c67b8f1b", "Unlicense (public domain, LICENSE)", "keywords"),
    "arkime/arkime": ("2d2f3678796bcedc6655a276f476b7ddd457f3f2", "Apache-2.0 (LICENSE)", "keywords"),
    "secdev/scapy": ("ac38b273405b038104df096fe941878937da87cd", "GPL-2.0 (LICENSE)", "keywords"),
    "google/gopacket": ("b7d9dbd15ae4c4621a62119b0c682dc23061a8bc", "BSD-3-Clause (LICENSE)", "keywords"),
    "chrissanders/packets": (
        "0412fb1dc0aa671128f9da6689e0dbd4459c0b51",
        "no licence file; README: free to use, cite Chris Sanders",
        "chrissanders",
    ),
    "markofu/pcaps": (
        "437d66912ac72155c227bc987ab6e9aa430b2285",
        "no licence file; mirror of book/challenge sample files",
        "markofu",
    ),
    "automayt/ICS-pcap": ("13b7ae335529146b40535c2d7aa756886040d8ad", "no licence file; collection of public ICS captures", "keywords"),
    # Added 2026-12-05 (rules: `match:` keeps the paths the pattern matches in full).
    "mivenzaro/application-traffic-dataset": (
        "8639da755c72883f93c284e1d7d5a99049774377",
        "no licence file; README: encrypted traffic traces collected for application-fingerprinting research",
        r"match:Voice_command_fingerprinting/[^/]+/[^/]+\.pcap",
    ),
    "cisco/mercury": ("3172786645f70e1a8347d8cf020b736e185651e5", "BSD-2-Clause style (COPYING, Cisco)", "mercury"),
    "ITI/ICS-Security-Tools": (
        "9b826091e7ba3fbdd5997d31e116f29e09cbbb48",
        "CC-BY-4.0 (LICENSE.md)",
        r"match:pcaps/(?!quickdraw/|bro/|Zigbee/)(?!.*melsoft_UDP)(?!.*unclean).*",
    ),
    "networklessons/labs": (
        "d024095bdfe679118449bf1b8d41ce774c14ed3b",
        "no licence file; README: protocol examples of the networklessons.com course labs, to open and analyse",
        "match:packet-captures/.*",
    ),
    "CESNET/ipfixprobe": ("f0f16888c426eced7adeed8fc2158362aca1a271", "BSD-3-Clause (LICENSE)", "match:tests/functional/inputs/.*"),
    "dotpcap/packetnet": ("26f495129d8f33ddabd88fffc71727e38473b794", "MPL-2.0 (LICENSE)", "match:Test/CaptureFiles/.*"),
    "DNS-OARC/dnscap": ("dd4427cdfb0c57c0d6f8ba8920673266c48f4af2", "BSD-3-Clause style (LICENSE, OARC)", "match:src/test/.*"),
    "cisco-system-traffic-generator/trex-core": (
        "27e0153b5ff833c51d48f1625ace979a2868d8a0",
        "Apache-2.0 (LICENSE)",
        "match:scripts/(avl|cap2)/.*",
    ),
    "cisco/joy": ("21770513e27ad10cde7c1ab7c1e6f024c8668119", "BSD-style (COPYING, Cisco)", "match:test/pcaps/.*"),
    # Added 2026-12-05 (session 12): peer-to-peer, Tor, VoIP, QUIC and VPN traffic, the kinds
    # of application traffic the model confused with brute force and scans.
    "Consensys/ethereum-dissectors": (
        "9a02341b9f21a493502fd5c03262a800a04dbd70",
        "GPL-2.0 (LICENSE); test capture of a Wireshark plugin: a live Ethereum node's devp2p discovery and RLPx sessions",
        r"match:test/test\.pcapng",
    ),
    "chhans/tor-automation": (
        "2c8d851fa324c53dbf12a0b07535ab41b400af89",
        "MIT (LICENSE.md); web browsing through Tor (the commit before the captures were removed)",
        r"match:PatternDumps/[^/]+/\d\.cap",
    ),
    "sipcapture/heplify": (
        "d524943f75620a689a6e5f8ace6ccb36ac8372de",
        "AGPL-3.0 (LICENSE); SIP, RTP/RTCP and T.38 fax examples (the commit before example/pcap was removed)",
        r"match:example/pcap/(FAX-Call-t38[^/]*|rtp_rtcp_sip_ipv4_udp|sip_ipv4_tcp[^/]*|sip_ipv6_udp|sip_tcp_websocket|erspan_sip_ipv4_udp|ipv6_udp_fragmented)\.pcapn?g?",
    ),
    "stanford-esrg/retina": (
        "6f097833a0d3ba37e35c1c9f83ab7b68c9e89785",
        "Apache-2.0 (LICENSE.md); QUIC v1 traces from Chrome",
        r"match:traces/quic(_kyber|_xargs)?\.pcapn?g?",
    ),
    "Lekensteyn/wireguard-dissector": (
        "240f0ab22232f33bac55ce3436b56a06042e4614",
        "GPL-2.0 (LICENSE.txt); a WireGuard handshake and tunnel",
        r"match:pcaps/8-trace\.pcap",
    ),
    # YouTube sessions of a static Wi-Fi device (the `movement_*` sessions walk out of radio
    # range: a third of their TCP flows get no reply).
    "Wimnet/RequetDataSet": (
        "e5c93e050692fee407f77484106eb1229fe631b6",
        "no licence file; README: Requet dataset (Gutterman et al., ACM MMSys 2019), cite the paper",
        r"match:(A|B1|B2|C|D)/PCAP_FILES/baseline_[^/]+\.pcap",
    ),
}

CAPTURE_EXT = re.compile(r"\.(pcap|pcapng|cap|dmp)$", re.I)

# Any of these in a capture's path marks it as an attack, a malware sample, a fuzzing or
# crash reproducer, an evasion test or an investigation exercise: not benign training data.
ATTACK_WORDS = re.compile(
    r"scan|nmap|masscan|flood|\bdos|ddos|denial|attack|exploit|cve|malware|mimikatz|psexec|"
    r"brute|crack|zerologon|eternal|ms17|shellcode|overflow|fuzz|crash|oobr|asan|heap|poison|"
    r"spoof|hijack|evil|cryptowall|aurora|botnet|trojan|worm|blaster|covert|evasion|evader|"
    r"bypass|inject|traversal|xss|backdoor|rootkit|tunnel|exfil|beacon|cobalt|metasploit|"
    r"meterpreter|honeypot|honeynet|forensic|challenge|hack|suspicious|fingerprint|hping|nikto|"
    r"hydra|smurf|teardrop|invalid|malformed|corrupt|truncat|overread|segv|anomal|abuse|amplif|"
    r"reflect|monlist|spray|leak|loop|bogus|bad|broken|wrong|fail|error|synthetic|crafted|"
    r"security-|dvwa|sqli|mirai|ransom|phish|(?<![a-z0-9])c2(?![a-z0-9])|ossfuzz|unaligned|"
    r"garbage|random|stress|infinite|dga|dnscat|iodine|sinkhole|ntlm-relay|smbghost|"
    r"bluekeep|heartbleed|shellshock|poodle|beast|drown|log4j|log4shell",
    re.I,
)

# suricata-verify: only tests named after an application protocol (the test directory's
# first word), and then still only without an attack word.
SURICATA_PROTOCOLS = {
    "dns", "http", "http2", "smtp", "tls", "ftp", "smb", "smb1", "smb2", "smb3", "dcerpc",
    "dnp3", "ldap", "mqtt", "mqtt5", "mqtt31", "mqtt311", "quic", "sip", "pgsql", "llmnr",
    "ssh", "dhcp", "rfb", "krb5", "pop3", "nfs", "nfs3", "nfs4", "snmp", "websocket", "enip",
    "ikev1", "ike", "bittorrent", "imap", "irc", "modbus", "ntp", "rdp", "telnet", "tftp",
    "mime", "igmp", "icmp", "sctp", "vxlan", "geneve", "arp", "ipv4", "ipv6", "tcp", "udp",
}

# chrissanders/packets and markofu/pcaps mix book examples of ordinary protocol use with
# attack and malware samples: only these, reviewed one by one, are kept.
CHRISSANDERS_BENIGN = {
    "arp_gratuitous.pcapng", "arp_resolution.pcapng", "dhcp6_outlease_acquisition.pcapng",
    "dhcp_inlease_renewal.pcapng", "dhcp_nolease_initialization.pcapng", "dns.pcap",
    "dns_axfr.pcapng", "dns_lab.pcapng", "dns_query_nonexistent.pcapng",
    "dns_query_response.pcapng", "dns_recursivequery_client.pcapng",
    "dns_recursivequery_server.pcapng", "dns_reverse_lookup.pcapng", "dns_tcp.pcapng",
    "http_espn.pcapng", "http_google.pcapng", "http_ip4and6.pcapng", "http_post.pcapng",
    "icmp_echo.pcapng", "icmp_traceroute.pcapng", "icmpv6_neighbor_solicitation.pcapng",
    "inconsistent_printer.pcapng", "ip_ttl_dest.pcapng", "ip_ttl_source.pcapng",
    "ipv6_fragments.pcapng", "latency1.pcapng", "latency2.pcapng", "latency3.pcapng",
    "latency4.pcapng", "mail_receiver_server_3.pcapng", "mail_sender_attachment.pcapng",
    "mail_sender_client_1.pcapng", "mail_sender_server_2.pcapng", "nowebaccess1.pcapng",
    "nowebaccess2.pcapng", "nowebaccess3.pcapng", "stranded_branchdns.pcapng",
    "stranded_clientside.pcapng", "tcp_dupack.pcapng", "tcp_handshake.pcapng",
    "tcp_refuseconnection.pcapng", "tcp_retransmissions.pcapng", "tcp_teardown.pcapng",
    "tcp_zerowindowdead.pcapng", "tcp_zerowindowrecovery.pcapng",
    "tickedoffdeveloper.pcapng", "udp_dnsrequest.pcapng", "weather_working.pcapng",
}
MARKOFU_BENIGN = {
    f"PracticalPacketAnalysis/ppa-capture-files/{n}"
    for n in (
        "arp.pcap", "barryscomputer.pcap", "bethscomputer.pcap", "destunreachable.pcap",
        "dhcp.pcap", "dns.cap", "double-vision.pcap", "email-troubles.pcap", "ftp.pcap",
        "ftp-uploadfailed.pcap", "ftpclientdenied.pcap", "ftpserverdenied.pcap",
        "gnutella.pcap", "http-client-refuse.pcap", "http-fault-post.pcap", "http.cap",
        "icmp.pcap", "icmp-tracert-slow.pcap", "msnms.pcap", "printerproblem.pcap",
        "tcp-con-lost.pcap", "telnet.pcap", "torrential-slowness.pcap",
    )
}

# cisco/mercury's test captures: its own captures of ordinary traffic, less these named
# for malware, fake or faked TLS, a residential proxy or a crafted parser case.
MERCURY_DIRS = ("unit_tests/pcaps/", "test/data/")
MERCURY_DENY = {
    "malware_tls.pcap", "faketls_potatovpn.pcap", "residential_proxy.pcap",
    "ipv6-domain-faking.pcap", "nist_nc.pcap",
}
MERCURY_CRAFTED = re.compile(r"exposed_creds|short_binder|missing")

# Transforms applied before the replay (named in the manifest).
TRANSFORMS = {
    # The capture's SPAN port tagged one direction with 802.1Q VLAN 100 and not the other,
    # so a sensor keyed on the VLAN sees every connection as two one-way flows.
    "tj-oconnor/IoT-Dataset": "strip-vlan",
}


def decide(repo, path, rule):
    """(keep, reason) from the repository, the path and the repository's rule."""
    name = path.rsplit("/", 1)[-1]
    if rule == "iot-sentinel":
        if not path.startswith("iot-sentinel/"):
            return False, "not part of the IoT Sentinel captures"
        return True, "IoT Sentinel: setup traffic of a consumer IoT device (real LAN/WAN)"
    if rule == "all":
        return True, "dataset of ordinary on-demand IoT device traffic (paper: no attacks)"
    if rule == "chrissanders":
        if name in CHRISSANDERS_BENIGN:
            return True, "book example of ordinary protocol use (reviewed by name)"
        return False, "not in the reviewed benign list (attack, malware or unclear)"
    if rule == "markofu":
        if path in MARKOFU_BENIGN:
            return True, "Practical Packet Analysis example of ordinary use (reviewed by name)"
        return False, "not in the reviewed benign list (attack, malware, challenge or unclear)"
    # A `match:` rule's literal leading directory names the dataset, not the capture
    # (mivenzaro's `Voice_command_fingerprinting/` is a research topic, not OS fingerprinting).
    top = re.match(r"match:([\w-]+/)", rule)
    m = ATTACK_WORDS.search(path[len(top.group(1)):] if top and path.startswith(top.group(1)) else path)
    if m:
        return False, f"path names an attack/fuzz/evasion/exercise ({m.group(0)!r})"
    if rule == "suricata":
        parts = path.split("/")
        test = parts[-2] if len(parts) >= 3 else ""
        top = parts[1] if len(parts) >= 3 else ""
        proto = re.split(r"[-_]", test)[0].lower()
        if proto not in SURICATA_PROTOCOLS and top.lower() not in SURICATA_PROTOCOLS:
            return False, f"suricata-verify test {test!r} is not an application-protocol test"
        return True, "suricata-verify application-protocol test (no attack word in its name)"
    if rule == "keywords":
        return True, "protocol sample of a parser test suite (no attack word in its path)"
    if rule.startswith("match:"):
        if not re.fullmatch(rule[6:], path):
            return False, "outside the repository's capture directories of ordinary traffic"
        return True, "capture of ordinary traffic in the repository's dataset or test directory (no attack word in its path)"
    if rule == "mercury":
        if not path.startswith(MERCURY_DIRS):
            return False, "not a test capture"
        if name in MERCURY_DENY or MERCURY_CRAFTED.search(name):
            return False, "malware, faked TLS, proxy or crafted parser case (reviewed by name)"
        return True, "test capture of ordinary traffic (no attack word in its path)"
    raise ValueError(rule)


def strip_vlan(data: bytes) -> bytes:
    """Removes 802.1Q/802.1ad tags from every frame of a classic pcap file."""
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError("strip-vlan: not a classic pcap file")
    out = [data[:24]]
    i = 24
    while i + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(e + "IIII", data[i : i + 16])
        frame = data[i + 16 : i + 16 + incl]
        i += 16 + incl
        while len(frame) >= 18 and frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
            frame = frame[:12] + frame[16:]
            incl -= 4
            orig -= 4
        out.append(struct.pack(e + "IIII", sec, frac, incl, orig) + frame)
    return b"".join(out)


def git_dir(repo, commit):
    """A git directory holding `commit` of `repo`."""
    mirror = os.environ.get("SAFELINK_CAPTURE_MIRROR", "/work/.mirror")
    g = Path(mirror) / repo.replace("/", "+") / "repo"
    if (g / ".git").is_dir():
        g = g / ".git"  # a mirror with a work tree
    if g.is_dir() and (not commit or has_commit(g, commit)):
        return g
    cache = Path(os.environ.get("SAFELINK_CAPTURE_CACHE", Path.home() / ".cache/safelink-captures"))
    g = cache / repo.replace("/", "+")
    if not g.is_dir():
        subprocess.run(
            ["git", "clone", "--bare", "--filter=blob:none", f"https://github.com/{repo}", str(g)],
            check=True,
        )
    if commit and not has_commit(g, commit):
        subprocess.run(["git", "--git-dir", str(g), "fetch", "origin", commit], check=True)
    return g


def has_commit(g, commit):
    r = subprocess.run(
        ["git", "--git-dir", str(g), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
    )
    return r.returncode == 0


def capture_paths(g, commit):
    """Every capture file's path in `commit` of the git directory `g`, sorted."""
    ls = subprocess.check_output(
        ["git", "--git-dir", str(g), "ls-tree", "-r", "-z", commit], text=True
    ).split("\0")
    return sorted(e.split("\t", 1)[1] for e in ls if e and CAPTURE_EXT.search(e.split("\t", 1)[1]))


def blob(g, commit, path):
    r = subprocess.run(["git", "--git-dir", str(g), "show", f"{commit}:{path}"], capture_output=True)
    return r.stdout if r.returncode == 0 else None


def safelink():
    b = os.environ.get("SAFELINK_BIN", str(ROOT / "target/release/safelink"))
    if not Path(b).is_file():
        sys.exit(f"no safelink binary at {b}: cargo build --release -p safelink (or SAFELINK_BIN)")
    return b


def replay(data, transform):
    """(feature CSV lines without header, rule alert kinds, error) of one capture."""
    if transform == "strip-vlan":
        data = strip_vlan(data)
    with tempfile.NamedTemporaryFile(suffix=".pcap") as t:
        t.write(data)
        t.flush()
        env = dict(os.environ, RUST_LOG="error")
        r = subprocess.run(
            [safelink(), "analyze", "--no-dfa", "--features", t.name],
            capture_output=True, text=True, env=env,
        )
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            # Drop the log line's time stamp and target: the reason must be the same every run.
            last = re.sub(r"^\S+\s+ERROR\s+\S+:\s*", "", last)
            last = last.replace(t.name, "<capture>")
            return None, None, last[-160:]
        rows = r.stdout.splitlines()[1:]
        a = subprocess.run([safelink(), "analyze", t.name], capture_output=True, text=True, env=env)
        kinds = sorted({json.loads(l)["kind"] for l in a.stdout.splitlines() if l.startswith("{")})
        return rows, kinds, None


def quality(rows):
    """None, or why the flows are not fit to train on."""
    if not rows:
        return "no IP flow"
    tcp = [r.split(",") for r in rows if r.split(",")[1] == "6"]
    oneway = sum(1 for r in tcp if r[11] == "0")  # rev_packets
    if len(tcp) >= 10 and oneway * 2 > len(tcp):
        return f"one-sided capture: {oneway} of {len(tcp)} TCP flows unanswered"
    return None


MANIFEST_HEAD = [
    "capture", "repository", "commit", "path", "sha256", "transform", "licence", "flows",
    "ipv6_flows", "rule_alerts", "decision",
]


def select(args):
    held = {
        l.split()[0]: l.split()[1]
        for l in HELDOUT.read_text().splitlines()
        if l.strip() and not l.startswith("#")
    }
    held_flows = held_out_flows()
    kept, excluded, seen = [], [], {}
    for repo, (commit, licence, rule) in REPOS.items():
        g = git_dir(repo, commit)
        commit = commit or subprocess.check_output(
            ["git", "--git-dir", str(g), "rev-parse", "HEAD"], text=True
        ).strip()
        paths = capture_paths(g, commit)
        print(f"{repo} @ {commit}: {len(paths)} capture files", file=sys.stderr)
        for path in paths:
            def out(reason, sha=""):
                excluded.append([repo, commit, path, sha, reason])
            keep, reason = decide(repo, path, rule)
            if not keep:
                out(reason)
                continue
            data = blob(g, commit, path)
            if not data:
                out("not in the snapshot (file of 4 MiB or more)")
                continue
            if data.startswith(b"version https://git-lfs"):
                out("Git LFS pointer (content not stored in git)")
                continue
            sha = hashlib.sha256(data).hexdigest()
            if sha in held:
                out(f"held out: same bytes as a capture of {held[sha]}", sha)
                continue
            if sha in seen:
                out(f"duplicate of {seen[sha]}", sha)
                continue
            seen[sha] = f"{repo}:{path}"
            transform = TRANSFORMS.get(repo, "")
            rows, kinds, err = replay(data, transform)
            if err:
                out(f"not replayable: {err}", sha)
                continue
            bad = quality(rows)
            if bad:
                out(bad, sha)
                continue
            same = same_flows(held_flows, rows, path)
            if same:
                out(f"held out: the same flows as {same[0]} (other bytes)", sha)
                continue
            if kinds and (rule in ("keywords", "suricata", "mercury") or rule.startswith("match:")):
                out(f"rule alert(s) {','.join(kinds)}: not clearly benign", sha)
                continue
            # A capture whose provenance says benign stays even when a rule fires on it (the
            # alert is a rule false positive, named in the manifest).
            v6 = sum(1 for r in rows if r.startswith("6,"))
            kept.append([
                repo, commit, path, sha, transform or "-", licence, len(rows), v6,
                ",".join(kinds) or "-", reason, rows,
            ])
    with open(MANIFEST, "w") as f:
        f.write("\t".join(MANIFEST_HEAD) + "\n")
        for i, k in enumerate(kept, 1):
            f.write("\t".join(str(x) for x in [i] + k[:10]) + "\n")
    with open(EXCLUDED, "w") as f:
        f.write("repository\tcommit\tpath\tsha256\treason\n")
        for e in excluded:
            f.write("\t".join(e) + "\n")
    write_rows([(i, k[10]) for i, k in enumerate(kept, 1)])
    print(
        f"kept {len(kept)} captures, {sum(k[6] for k in kept)} flows; excluded {len(excluded)}",
        file=sys.stderr,
    )


def header():
    r = subprocess.run(
        [safelink(), "analyze", "--no-dfa", "--features", "/dev/null"], capture_output=True, text=True
    )
    return "capture," + r.stdout.splitlines()[0]


def csv_text(per_capture):
    buf = io.StringIO()
    buf.write(header() + "\n")
    for i, rows in per_capture:
        for r in rows:
            buf.write(f"{i},{r}\n")
    return buf.getvalue()


def write_rows(per_capture):
    ROWS.write_bytes(gzip.compress(csv_text(per_capture).encode(), compresslevel=9, mtime=0))


def rows(args):
    lines = MANIFEST.read_text().splitlines()
    head = lines[0].split("\t")
    col = {h: i for i, h in enumerate(head)}
    per_capture = []
    for l in lines[1:]:
        c = l.split("\t")
        repo, commit, path = c[col["repository"]], c[col["commit"]], c[col["path"]]
        data = blob(git_dir(repo, commit), commit, path)
        if data is None or hashlib.sha256(data).hexdigest() != c[col["sha256"]]:
            sys.exit(f"{repo}@{commit}:{path}: missing or not the pinned content")
        t = c[col["transform"]]
        r, _, err = replay(data, "" if t == "-" else t)
        if err:
            sys.exit(f"{path}: {err}")
        if len(r) != int(c[col["flows"]]):
            msg = f"{path}: {len(r)} flows, the manifest says {c[col['flows']]}"
            if not args.check:
                sys.exit(msg)
            print(msg, file=sys.stderr)
        per_capture.append((int(c[col["capture"]]), r))
    text = csv_text(per_capture)
    if args.check:
        old = gzip.decompress(ROWS.read_bytes()).decode()
        if old != text:
            # Which captures differ, and by how many rows (as multisets).
            import collections

            def by_capture(t):
                d = collections.defaultdict(collections.Counter)
                for l in t.splitlines()[1:]:
                    d[l.split(",", 1)[0]][l] += 1
                return d

            a, b = by_capture(old), by_capture(text)
            diff = [k for k in sorted(set(a) | set(b), key=int) if a.get(k) != b.get(k)]
            gone = sum(sum((a[k] - b.get(k, collections.Counter())).values()) for k in diff)
            new = sum(sum((b[k] - a.get(k, collections.Counter())).values()) for k in diff)
            sys.exit(
                f"flows.csv.gz differs from the rows regenerated from MANIFEST.tsv: {len(diff)} "
                f"captures (first: {diff[:5]}), {gone} committed rows not regenerated, {new} new"
            )
        print(f"flows.csv.gz: {text.count(chr(10)) - 1} rows, identical", file=sys.stderr)
    else:
        ROWS.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))


PORTS = {
    53: "DNS", 80: "HTTP", 443: "HTTPS/QUIC", 67: "DHCP", 68: "DHCP", 123: "NTP",
    1900: "SSDP", 5353: "mDNS", 5355: "LLMNR", 137: "NetBIOS", 138: "NetBIOS", 161: "SNMP",
    21: "FTP", 22: "SSH", 23: "Telnet", 25: "SMTP", 110: "POP3", 143: "IMAP", 445: "SMB",
    139: "SMB", 135: "DCERPC", 88: "Kerberos", 389: "LDAP", 5060: "SIP", 1883: "MQTT",
    8883: "MQTT/TLS", 8080: "HTTP-alt", 5432: "PostgreSQL", 2049: "NFS", 111: "RPC",
    500: "IKE", 502: "Modbus", 20000: "DNP3", 3389: "RDP", 5900: "VNC", 69: "TFTP",
    9999: "TP-Link", 6881: "BitTorrent", 3478: "STUN", 853: "DNS/TLS", 993: "IMAPS",
}


def report(args):
    """Totals of the committed rows, as Markdown on stdout."""
    import collections

    text = gzip.decompress(ROWS.read_bytes()).decode().splitlines()
    head = text[0].split(",")
    ix = {h: i for i, h in enumerate(head)}
    rows = [l.split(",") for l in text[1:]]
    man = [l.split("\t") for l in MANIFEST.read_text().splitlines()[1:]]
    n = len(rows)
    pct = lambda k: f"{100.0 * k / max(n, 1):.1f} %"
    print(f"- captures: {len(man)} from {len({m[1] for m in man})} repositories; flows: {n}")
    by_repo = collections.Counter()
    caps_repo = collections.Counter()
    for m in man:
        by_repo[m[1]] += int(m[7])
        caps_repo[m[1]] += 1
    print("\n| repository | captures | flows |\n|---|---|---|")
    for r, f in by_repo.most_common():
        print(f"| {r} | {caps_repo[r]} | {f} |")
    v6 = sum(1 for r in rows if r[ix["ip_version"]] == "6")
    print(f"\n- IPv4 flows: {n - v6} ({pct(n - v6)}); IPv6 flows: {v6} ({pct(v6)})")
    pr = collections.Counter({"6": "TCP", "17": "UDP", "1": "ICMP", "58": "ICMPv6"}.get(r[ix["proto"]], "other IP") for r in rows)
    print("- IP protocols: " + ", ".join(f"{k} {v} ({pct(v)})" for k, v in pr.most_common()))
    svc = collections.Counter()
    for r in rows:
        if r[ix["proto"]] not in ("6", "17"):
            continue
        sp, dp = int(r[ix["src_port"]]), int(r[ix["dst_port"]])
        name = PORTS.get(dp) or PORTS.get(sp) or ("other < 1024" if min(sp, dp) < 1024 else "other ≥ 1024")
        svc[name] += 1
    print("- services (by well-known port, TCP/UDP): " + ", ".join(f"{k} {v}" for k, v in svc.most_common(25)))
    pk = sorted(int(float(r[ix["fwd_packets"]])) + int(float(r[ix["rev_packets"]])) for r in rows)
    du = sorted(float(r[ix["duration_s"]]) for r in rows)
    q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))]
    print("- packets per flow: " + ", ".join(f"p{int(p * 100)} {q(pk, p)}" for p in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)) + f", max {pk[-1]}")
    print("- duration per flow (s): " + ", ".join(f"p{int(p * 100)} {q(du, p):.3g}" for p in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)) + f", max {du[-1]:.0f}")
    buckets = [(1, "1 packet"), (2, "2"), (10, "3-10"), (100, "11-100"), (1000, "101-1000"), (10**12, "> 1000")]
    cnt = collections.Counter()
    for k in pk:
        cnt[next(lab for lim, lab in buckets if k <= lim)] += 1
    print("- flows by packets: " + ", ".join(f"{lab} {cnt[lab]} ({pct(cnt[lab])})" for _, lab in buckets))
    oneway = sum(1 for r in rows if r[ix["rev_packets"]] == "0")
    print(f"- one-way flows (no reply packet): {oneway} ({pct(oneway)})")
    alerted = [m for m in man if m[9] != "-"]
    print(f"- kept captures on which a rule fires (rule false positives, kept by provenance): {len(alerted)}")


def extract(args):
    """Writes the kept captures (after their transform) and a MANIFEST.tsv in the form of
    tests/pcaps into a directory, e.g. for `eval_pcaps.py` or `safelink model eval`."""
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = MANIFEST.read_text().splitlines()
    col = {h: i for i, h in enumerate(lines[0].split("\t"))}
    man = ["file\tclass\texpected_detection\tattacker_ip_or_mac"]
    for l in lines[1:]:
        c = l.split("\t")
        repo, commit, path = c[col["repository"]], c[col["commit"]], c[col["path"]]
        data = blob(git_dir(repo, commit), commit, path)
        if c[col["transform"]] == "strip-vlan":
            data = strip_vlan(data)
        ext = path.rsplit(".", 1)[-1].lower()
        name = f"benign__{int(c[col['capture']]):04d}.{'pcapng' if ext == 'pcapng' else 'pcap'}"
        (out / name).write_bytes(data)
        man.append(f"{name}\tbenign\tnone\t-")
    (out / "MANIFEST.tsv").write_text("\n".join(man) + "\n")


# The independent evaluation repositories whose captures heldout_sha256.txt lists, at the
# commits it names.
HELD_OUT_REPOS = {
    "ntop/nDPI": "3b1286ab03b0c9223ac208a01868d8c1f6c0ae00",
    "zeek/zeek": "a13de64fbbdb01f90961c04719b308fbbb6d199e",
}


def flows_hash(rows):
    """One capture's flows as a set-like fingerprint: the hash of its sorted feature rows."""
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


def held_out_captures(keep=lambda path: True):
    """(repository, path, bytes, feature rows) of every held-out (nDPI, Zeek) capture whose
    path `keep` accepts and that replays to at least one flow."""
    for repo, commit in HELD_OUT_REPOS.items():
        g = git_dir(repo, commit)
        paths = [p for p in capture_paths(g, commit) if keep(p)]
        print(f"held out {repo} @ {commit}: replaying {len(paths)} capture files", file=sys.stderr)
        for path in paths:
            data = blob(g, commit, path)
            if not data or data.startswith(b"version https://git-lfs"):
                continue
            rows, _, err = replay(data, "")
            if not err and rows:
                yield repo, path, data, rows


def held_out_flows():
    """flows_hash -> the held-out (nDPI, Zeek) captures with those flows."""
    held = {}
    for repo, path, _, rows in held_out_captures():
        held.setdefault(flows_hash(rows), []).append(f"{repo}:{path}")
    return held


def same_flows(held, rows, path):
    """The held-out captures whose flows equal `rows` (a capture at `path`): the same sorted
    feature rows, and at least two rows or the same file name (one tiny flow alike is
    chance)."""
    base = lambda p: Path(p).stem.lower()
    return [x for x in held.get(flows_hash(rows), []) if len(rows) >= 2 or base(x) == base(path)]


def copies(args):
    """Kept captures whose flows equal a held-out capture's, though their bytes differ (a
    re-encoded or re-captured copy that the sha256 check cannot see); `select` refuses them."""
    held = held_out_flows()
    text = gzip.decompress(ROWS.read_bytes()).decode().splitlines()[1:]
    per = {}
    for l in text:
        c, r = l.split(",", 1)
        per.setdefault(c, []).append(r)
    lines = MANIFEST.read_text().splitlines()
    col = {h: i for i, h in enumerate(lines[0].split("\t"))}
    man = {l.split("\t")[0]: l.split("\t") for l in lines[1:]}
    found = 0
    for c, r in sorted(per.items(), key=lambda x: int(x[0])):
        path = man[c][col["path"]]
        same = same_flows(held, r, path)
        if same:
            found += 1
            print(f"{c}\t{man[c][col['repository']]}:{path}\t{len(r)} rows\t= {', '.join(same)}")
    print(f"{found} kept captures have the flows of a held-out capture", file=sys.stderr)


def heldout(args):
    """Writes the held-out (nDPI, Zeek) captures whose path names no attack word and that
    replay to at least one flow into a directory with a MANIFEST.tsv (class `benign`), for
    `cargo xtask eval DIR`: benign traffic the base model never trained on, from other
    networks and tools. By name only, not reviewed one by one: some may hold attack traffic."""
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    man = ["file\tclass\texpected_detection\tattacker_ip_or_mac"]
    seen = set()
    attacks = labelled_attack_hashes()
    known = []
    for repo, path, data, _ in held_out_captures(lambda p: not ATTACK_WORDS.search(p)):
        sha = hashlib.sha256(data).hexdigest()
        if sha in attacks:
            known.append(f"{repo}:{path} ({attacks[sha]})")
            continue
        if sha in seen:
            continue
        seen.add(sha)
        ext = "pcapng" if path.lower().endswith(".pcapng") else "pcap"
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)[:48]
        name = f"benign__{repo.split('/')[1].lower()}-{len(man):04d}-{stem}.{ext}"
        (out / name).write_bytes(data)
        man.append(f"{name}\tbenign\tnone\t-")
    (out / "MANIFEST.tsv").write_text("\n".join(man) + "\n")
    for k in known:
        print(f"left out, a copy of a labelled attack capture: {k}", file=sys.stderr)
    print(f"{len(man) - 1} held-out captures written to {out}", file=sys.stderr)


def labelled_attack_hashes():
    """sha256 -> file name of every attack capture the project labels (the MANIFEST.tsv files
    of `tests/pcaps`, `models/lab` and `../shared/data/pcaps`): a held-out trace with no attack
    word in its path may still be one of them (Zeek's `ssh/sshguess.pcap` is the shared
    `sshbrute__password-guessing-11conns.pcap`), and is then no benign traffic."""
    hashes = {}
    dirs = [ROOT / "tests" / "pcaps", ROOT / "models" / "lab", ROOT.parent / "shared" / "data" / "pcaps"]
    for d in dirs:
        for manifest in sorted(d.rglob("MANIFEST.tsv")) if d.is_dir() else []:
            for line in manifest.read_text().splitlines()[1:]:
                cols = line.split("\t")
                f = manifest.parent / cols[0]
                if len(cols) > 1 and cols[1] != "benign" and f.is_file():
                    hashes[hashlib.sha256(f.read_bytes()).hexdigest()] = cols[0]
    return hashes


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("select")
    sub.add_parser("report")
    sub.add_parser("copies")
    h = sub.add_parser("heldout")
    h.add_argument("dir")
    x = sub.add_parser("extract")
    x.add_argument("dir")
    r = sub.add_parser("rows")
    r.add_argument("--check", action="store_true")
    a = p.parse_args()
    {"select": select, "rows": rows, "report": report, "extract": extract, "copies": copies, "heldout": heldout}[a.cmd](a)


if __name__ == "__main__":
    main()
