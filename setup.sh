#!/usr/bin/env bash
# SafeLink host setup for Debian 12 (bookworm) x86_64. Run as root. Idempotent: a second run
# checks everything and installs nothing (a few seconds).
#
#   userspace crates : rustc 1.95.0 (pinned in rust-toolchain.toml)
#   eBPF crate       : nightly-2026-05-15 (rustc 1.97.0-nightly, LLVM 22.1.4) + rust-src
#   bpf-linker       : 0.13.0 built against Debian llvm-22-dev (LLVM 22.1.8)
#
# Invariant: LLVM(bpf-linker) major == LLVM(eBPF rustc) major, and bpf-linker's LLVM must be
# >= rustc's. Bump both together (see ../shared/toolchain-probe/RECIPE.md).
#
#   ./setup.sh           build + runtime dependencies
#   ./setup.sh --test    also the test-suite dependencies (tshark, tcpreplay, attack tools, ...)
#   ./setup.sh --fuzz    only cargo-fuzz 0.13.1 for `cargo xtask fuzz` (--test includes it)
set -euo pipefail

USER_TOOLCHAIN=1.95.0
EBPF_TOOLCHAIN=nightly-2026-05-15
BPF_LINKER_VERSION=0.13.0
LLVM_MAJOR=22
LLVM_PREFIX_DIR=/usr/lib/llvm-$LLVM_MAJOR

say() { printf '[setup] %s\n' "$*"; }
if [[ $EUID -ne 0 ]]; then
    echo "setup.sh: must run as root (it installs apt packages and loads XDP programs later)" >&2
    exit 1
fi

WANT_TEST=0
WANT_FUZZ=0
for a in "$@"; do
    case "$a" in
        --test) WANT_TEST=1 ;;
        --fuzz) WANT_FUZZ=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- apt
APT_PKGS=(
    ca-certificates curl build-essential pkg-config  # rustup download + host C linker
    "llvm-$LLVM_MAJOR-dev"                            # libLLVM for bpf-linker (llvm-sys)
    bpftool iproute2 util-linux                       # bpftool, ip netns, nsenter
)
if ((WANT_TEST)); then
    APT_PKGS+=(
        iputils-ping iputils-arping python3 python3-venv  # traffic + assertions
        python3-jsonschema                                # EVE export against Suricata's schema
        tshark wireshark-common tcpreplay                 # independent flow counts, mergecap, replay
        nmap masscan hping3 hydra dsniff                  # attack tools (live lab, own namespaces only)
        openssh-server openssh-client iperf3 curl         # victim services and benign clients
        dnsmasq-base bind9-dnsutils                       # DNS server (no system service) and dig
        chromium chromium-driver                          # dashboard test: headless browser + WebDriver
        nats-server                                       # fleet tests: JetStream (own port + store each)
        openssl                                           # fleet TLS test: its own CA and certificate
    )
fi
missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Packages installed here for the test lab (openssh-server, ...) must not start services on
    # this host: a policy-rc.d that denies starts, only while we install.
    own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt-get update -o DPkg::Lock::Timeout=600
    apt-get install -y -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
    if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null; then
        # The lab runs its own sshd inside a namespace; do not leave one enabled on the host.
        systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
    if [[ " ${missing[*]} " == *" nats-server "* ]] && command -v systemctl >/dev/null; then
        # Fleet tests and benchmarks start their own server on 127.0.0.1 with a random port;
        # the package's unit stays stopped and disabled.
        systemctl disable --now nats-server.service >/dev/null 2>&1 || true
    fi
else
    say "apt packages present (${#APT_PKGS[@]})"
fi

# ---------------------------------------------------------------- schemathesis (--test)
# The API fuzz test (tests/api_fuzz.rs) runs schemathesis, pinned, from its own venv: Debian's
# python is externally managed (PEP 668), and a venv needs no --break-system-packages.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=/opt/safelink-schemathesis
if ((WANT_TEST)); then
    if "$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
        say "schemathesis $SCHEMATHESIS_VERSION present ($SCHEMATHESIS_VENV)"
    else
        say "pip install schemathesis==$SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
        python3 -m venv "$SCHEMATHESIS_VENV"
        "$SCHEMATHESIS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION"
        "$SCHEMATHESIS_VENV/bin/schemathesis" --version | grep -q "version $SCHEMATHESIS_VERSION\$" ||
            { echo "setup.sh: schemathesis $SCHEMATHESIS_VERSION did not install" >&2; exit 1; }
    fi
fi

# ---------------------------------------------------------------- rustup
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"
if ! command -v rustup >/dev/null; then
    say "installing rustup (no default toolchain) from static.rust-lang.org"
    tmpd=$(mktemp -d)
    # The binary must be called rustup-init: it dispatches on argv[0].
    curl --proto '=https' --tlsv1.2 -sSf -o "$tmpd/rustup-init" \
        https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init
    chmod +x "$tmpd/rustup-init"
    "$tmpd/rustup-init" -y --profile minimal --default-toolchain none --no-modify-path
    rm -rf "$tmpd"
fi

have_toolchain() { rustup toolchain list | grep -q "^$1-"; }
have_component() { rustup component list --installed --toolchain "$1" 2>/dev/null | grep -q "^$2"; }
if have_toolchain "$USER_TOOLCHAIN" && have_component "$USER_TOOLCHAIN" clippy && have_component "$USER_TOOLCHAIN" rustfmt; then
    say "toolchain $USER_TOOLCHAIN (+clippy, rustfmt) present"
else
    rustup toolchain install "$USER_TOOLCHAIN" --profile minimal --component clippy,rustfmt
fi
if have_toolchain "$EBPF_TOOLCHAIN" && have_component "$EBPF_TOOLCHAIN" rust-src; then
    say "toolchain $EBPF_TOOLCHAIN (+rust-src) present"
else
    rustup toolchain install "$EBPF_TOOLCHAIN" --profile minimal --component rust-src
fi

# ---------------------------------------------------------------- cargo-fuzz (--test, --fuzz)
# `cargo xtask fuzz` builds fuzz/ and fuzz/parser/ with the eBPF nightly; `cargo xtask test`
# runs the light `parser` target for 30 s.
CARGO_FUZZ_VERSION=0.13.1
if ((WANT_FUZZ || WANT_TEST)); then
    if cargo fuzz --version 2>/dev/null | grep -q "^cargo-fuzz $CARGO_FUZZ_VERSION\$"; then
        say "cargo-fuzz $CARGO_FUZZ_VERSION present"
    else
        say "cargo install cargo-fuzz@$CARGO_FUZZ_VERSION"
        cargo +"$USER_TOOLCHAIN" install --locked --force "cargo-fuzz@$CARGO_FUZZ_VERSION"
    fi
fi

# ---------------------------------------------------------------- bpf-linker
linker_ok() {
    command -v bpf-linker >/dev/null &&
        bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION" &&
        ldd "$(command -v bpf-linker)" | grep -q "libLLVM.so.$LLVM_MAJOR"
}
if linker_ok; then
    say "bpf-linker $BPF_LINKER_VERSION (libLLVM $LLVM_MAJOR) present"
else
    say "cargo install bpf-linker@$BPF_LINKER_VERSION (llvm-$LLVM_MAJOR), about a minute"
    LLVM_PREFIX="$LLVM_PREFIX_DIR" cargo +"$USER_TOOLCHAIN" install "bpf-linker@$BPF_LINKER_VERSION" \
        --locked --force --no-default-features --features "llvm-$LLVM_MAJOR"
    linker_ok || { echo "setup.sh: bpf-linker install did not produce the expected binary" >&2; exit 1; }
fi

# Make `cargo xtask ...` work in the caller's shell even when ~/.cargo/bin is not on its PATH
# (fresh host, rustup installed with --no-modify-path): rustup proxies dispatch on argv[0].
for tool in cargo rustup bpf-linker; do
    if [[ ! -e /usr/local/bin/$tool ]] && ! PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$tool" >/dev/null; then
        ln -s "$CARGO_BIN/$tool" "/usr/local/bin/$tool"
        say "linked /usr/local/bin/$tool -> $CARGO_BIN/$tool"
    fi
done

# bpffs for pinned maps.
if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf
    say "mounted bpffs on /sys/fs/bpf"
fi
say "ready: $(rustc +"$EBPF_TOOLCHAIN" -vV | grep -E '^LLVM' ), bpf-linker $(bpf-linker --version | awk '{print $2}')"
