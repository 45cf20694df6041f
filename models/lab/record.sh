#!/usr/bin/env bash
# Records the ANN lab captures in models/lab/ with real tools, inside two network namespaces
# joined by one veth pair (198.51.100.0/24, TEST-NET-2) that this script creates and deletes.
# Nothing touches the host's own interfaces. Every tool run is bounded (timeout, packet counts,
# rates); captures are taken on the victim side with dumpcap (snaplen 160: headers only, no
# payload kept) entered through `nsenter --net=/run/netns/NS`.
#
#   sudo models/lab/record.sh            # rewrites models/lab/*.pcapng and MANIFEST.tsv
#
# A host sweep is not recorded: on a two-host link the sweep's probes to absent hosts never
# leave the sender (ARP fails first), so the victim side sees no IP flows.
#
# Needs: iproute2, dumpcap, nmap, hping3, hydra, iperf3, curl, ssh/sshd, dig, dnsmasq, python3.
set -euo pipefail

OUT="$(cd "$(dirname "$0")" && pwd)"
A=annlab-atk          # attacker / client namespace
V=annlab-vic          # victim / server namespace
A_IP=198.51.100.1
V_IP=198.51.100.2
WORK="$(mktemp -d /tmp/annlab.XXXXXX)"
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
for t in ip dumpcap nmap hping3 hydra iperf3 curl ssh sshd ssh-keygen dig dnsmasq python3 nsenter; do
    command -v "$t" >/dev/null || { echo "record.sh: missing $t" >&2; exit 1; }
done

inA() { nsenter --net=/run/netns/$A -- "$@"; }
inV() { nsenter --net=/run/netns/$V -- "$@"; }

ip netns add "$A"
ip netns add "$V"
ip link add annla0 netns "$A" type veth peer name annlv0 netns "$V"
inA ip addr add $A_IP/24 dev annla0
inV ip addr add $V_IP/24 dev annlv0
inA ip link set lo up
inV ip link set lo up
inA ip link set annla0 up
inV ip link set annlv0 up
# Fixed MACs so the captures are the same from run to run.
inA ip link set annla0 address 02:00:c6:33:64:01
inV ip link set annlv0 address 02:00:c6:33:64:02
sleep 1

# ---- services in the victim namespace (all bounded by the namespace's lifetime)
mkdir -p /run/sshd "$WORK/www"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key" </dev/null
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key" </dev/null
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
chmod 600 "$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<EOF
ListenAddress $V_IP
Port 22
HostKey $WORK/host_key
PermitRootLogin prohibit-password
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxAuthTries 3
PidFile $WORK/sshd.pid
EOF
nsenter --net=/run/netns/$V -- /usr/sbin/sshd -D -f "$WORK/sshd_config" >/dev/null 2>&1 &
PIDS+=($!)
head -c 200000 /dev/urandom | base64 >"$WORK/www/big.txt"
echo '<html><body>lab</body></html>' >"$WORK/www/index.html"
nsenter --net=/run/netns/$V -- python3 -m http.server 80 --bind $V_IP --directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=($!)
nsenter --net=/run/netns/$V -- dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=$V_IP --bind-interfaces \
    --address=/lab.test/$V_IP --address=/www.lab.test/$V_IP --pid-file="$WORK/dnsmasq.pid" >/dev/null 2>&1 &
PIDS+=($!)
nsenter --net=/run/netns/$V -- iperf3 -s -B $V_IP >/dev/null 2>&1 &
PIDS+=($!)
sleep 1.5

SSH_OPTS=(-i "$WORK/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5)

# record NAME SECONDS-MAX COMMAND...: capture on the victim side while COMMAND runs (bounded
# by timeout) in the attacker namespace, then wait for the last packets and stop the capture.
record() {
    local name=$1 max=$2
    shift 2
    # ONLY=substring re-records just the matching captures.
    if [ -n "${ONLY:-}" ] && [[ "$name" != *"$ONLY"* ]]; then return 0; fi
    local f="$OUT/$name.pcapng"
    rm -f "$f"
    nsenter --net=/run/netns/$V -- dumpcap -q -i annlv0 -s 160 -a "duration:$((max + 5))" -w "$f" 2>/dev/null &
    local cap=$!
    PIDS+=($cap)
    sleep 1.5
    timeout "$max" nsenter --net=/run/netns/$A -- "$@" >/dev/null 2>&1 || true
    sleep 2
    kill -INT "$cap" 2>/dev/null || true
    wait "$cap" 2>/dev/null || true
    chmod 644 "$f"
    echo "recorded $name: $(stat -c %s "$f") bytes"
}

# ---- benign
record benign__lab-curl-http 40 bash -c "for i in \$(seq 1 15); do
    curl -s -o /dev/null http://$V_IP/index.html
    curl -s -o /dev/null http://$V_IP/big.txt
    sleep 0.3; done"
record benign__lab-ssh-sessions 60 bash -c "for i in \$(seq 1 6); do
    ssh ${SSH_OPTS[*]} root@$V_IP 'uname -a; ls /; sleep 1'
    sleep 0.5; done"
record benign__lab-dns-lookups 30 bash -c "for i in \$(seq 1 20); do
    dig +tries=1 +time=2 @$V_IP lab.test A
    dig +tries=1 +time=2 @$V_IP www.lab.test A
    sleep 0.2; done"
record benign__lab-iperf3-tcp 15 iperf3 -c $V_IP -t 3 -b 4M
record benign__lab-ping 15 ping -c 8 -i 0.5 $V_IP

# ---- attacks (attacker $A_IP; the spoofed flood is labelled by its victim $V_IP)
record portscan__lab-nmap-syn-1000 90 nmap -n -Pn -sS -T4 --max-retries 1 -p 1-1000 $V_IP
record portscan__lab-nmap-udp-100 90 nmap -n -Pn -sU -T5 --max-retries 0 --top-ports 100 $V_IP
record portscan__lab-hping3-fin-scan 30 hping3 -F -p ++1 -c 200 -i u20000 $V_IP
record synflood__lab-hping3-rand-source 20 hping3 -S -p 80 --rand-source -c 3000 -i u1000 $V_IP
record icmpflood__lab-hping3-icmp 20 hping3 -1 -c 2000 -i u1000 -d 500 $V_IP
record udpflood__lab-hping3-udp 20 hping3 -2 -s 40000 -k -p 9999 -c 2000 -i u1000 -d 400 $V_IP
printf 'root\nadmin\n123456\npassword\nletmein\nqwerty\ntoor\nchangeme\nsecret\nhunter2\n' >"$WORK/pw.txt"
printf 'admin\nuser\ntest\nguest\n' >"$WORK/users.txt"
record sshbrute__lab-hydra-ssh 120 hydra -L "$WORK/users.txt" -P "$WORK/pw.txt" -t 4 -I -w 5 ssh://$V_IP

cat >"$OUT/MANIFEST.tsv" <<EOF
file	class	expected_detection	attacker_ip_or_mac	note
benign__lab-curl-http.pcapng	benign	none (30 HTTP GETs, curl → python http.server)	n/a	lab
benign__lab-ssh-sessions.pcapng	benign	none (6 key-authenticated SSH sessions)	n/a	lab
benign__lab-dns-lookups.pcapng	benign	none (40 DNS A lookups, dig → dnsmasq)	n/a	lab
benign__lab-iperf3-tcp.pcapng	benign	none (iperf3 TCP 3 s at 4 Mbit/s)	n/a	lab
benign__lab-ping.pcapng	benign	none (8 pings)	n/a	lab
portscan__lab-nmap-syn-1000.pcapng	portscan	port_scan (nmap -sS, 1000 ports)	$A_IP	lab
portscan__lab-nmap-udp-100.pcapng	portscan	udp port scan (nmap -sU, top 100 ports)	$A_IP	lab
portscan__lab-hping3-fin-scan.pcapng	portscan	port_scan (hping3 FIN probes to 200 ports)	$A_IP	lab
synflood__lab-hping3-rand-source.pcapng	synflood	syn_flood (hping3 --rand-source, 3000 SYN at 1 kpps); victim $V_IP	spoofed sources; victim $V_IP	lab
icmpflood__lab-hping3-icmp.pcapng	icmpflood	icmp_flood (hping3 -1, 2000 echo of 528 B at 1 kpps)	$A_IP	lab
udpflood__lab-hping3-udp.pcapng	udpflood	udp_flood (hping3 -2 from one source port, 2000 datagrams of 400 B at 1 kpps)	$A_IP	lab
sshbrute__lab-hydra-ssh.pcapng	sshbrute	ssh_brute_force (hydra, 4 users x 10 passwords, 4 tasks)	$A_IP	lab
EOF
echo "done: $OUT"
