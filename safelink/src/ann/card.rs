//! The model card (`models/README.md`), rendered by the recipe from what it measured and
//! from the feature table, so the card cannot drift from the code or the model.
use std::fmt::Write as _;

use super::features::{FEATURE_VECTOR_VERSION, N_FEATURES, markdown_table};
use super::metrics::Metrics;
use super::recipe::RecipeReport;

fn metrics_row(name: &str, m: &Metrics) -> String {
    format!(
        "| {name} | {:.2} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} / {} / {} / {} |\n",
        m.threshold,
        m.n,
        m.accuracy,
        m.precision,
        m.recall,
        m.false_positive_rate,
        m.roc_auc,
        m.tp,
        m.fp,
        m.tn,
        m.fn_
    )
}

/// The paragraph on the lab recordings: `models/lab/train` (trained on, when among the
/// capture directories) and `models/lab` (evaluation only).
fn lab_text(r: &RecipeReport) -> String {
    let train = r
        .ann_alone
        .iter()
        .find(|d| d.trained_on && d.dir.contains("lab"));
    let eval = r
        .ann_alone
        .iter()
        .find(|d| !d.trained_on && d.dir.contains("lab"));
    let mut s = String::new();
    if let Some(t) = train {
        let _ = write!(
            s,
            "Lab training captures (`{dir}`, recorded by `models/lab/train/record.sh` as root): \
real tools between two network namespaces of their own (`atktr-a`, `atktr-v`) joined by one \
veth pair on 198.51.100.0/24, with 192.0.2.0/24 routed behind the victim for host sweeps, \
captured on the victim side with dumpcap (headers only); {n} captures, each labelled like a \
`tests/pcaps` capture (the attacker address, or the victim for spoofed floods and \
reflection) with the same golden split. Attacks: nmap connect, FIN, NULL, XMAS, ACK, Maimon, \
SYN and UDP scans at -T2..-T5, masscan TCP and UDP at 150-3000 pps, hping3 --scan and nping \
probes; nmap, nping, masscan, hping3 and ping host sweeps; hydra, ncrack and medusa SSH \
password guessing (ports 22 and 2222, 1-8 tasks), hydra and medusa FTP and HTTP basic-auth \
guessing; hping3 and nping SYN, UDP and ICMP floods at 300-10000 pps with fixed, incrementing \
and spoofed sources, ping -f; reflected DNS answers from 8 and 60 reflectors. Benign: SSH \
sessions with keys and passwords, scp, curl bursts and basic-auth logins, DNS over UDP and \
TCP, iperf3 TCP and UDP at moderate rates, ping, FTP logins. Their tools, options, rates, \
ports and targets differ from the evaluation captures' (no command line of \
`models/lab/record.sh` is reused), so the evaluation set below stays unseen. ",
            dir = t.dir,
            n = t.eval.captures.len(),
        );
    }
    match eval {
        Some(l) => {
            let _ = write!(
                s,
                "The evaluation lab captures (`{dir}`) are **not** training data: they are an \
independent evaluation set (other tools, options and tool versions), reported in their own \
section. Training on them too (`--pcaps tests/pcaps --pcaps models/lab`) was tried once: it \
raised lab recall, but the public `benign__snmpwalk.pcap` flow (held out) then scored ≥ 0.9, \
breaking the no-benign-alert requirement on the shared captures, so the shipped model keeps \
them out. They were recorded by `models/lab/record.sh` as root: real tools between two network \
namespaces joined by a veth pair on 198.51.100.0/24 (TEST-NET-2), created and deleted by the \
script, captured on the victim side with dumpcap (headers only). Benign: curl ↔ python \
http.server, key-authenticated ssh sessions, dig ↔ dnsmasq, iperf3 TCP, ping. Attacks: nmap \
SYN and UDP scans, hping3 FIN scan, hping3 SYN flood with random sources, ICMP and UDP floods, \
hydra SSH password guessing. Not recorded: masscan (it needs a router MAC on the veth) and a \
host sweep (on a two-host link the probes to absent hosts never leave the sender). The lab is \
one link with default kernel settings (GSO on, so iperf3 segments are large), so its benign \
traffic is simpler than a real network's.",
                dir = l.dir,
            );
        }
        None if train.is_none() => s.push_str(
            "Lab recordings with real tools in network namespaces were **not** made for this \
model: it is trained on the shipped public captures only.",
        ),
        None => {}
    }
    s
}

/// The card's Markdown.
pub fn render(r: &RecipeReport, command: &str) -> String {
    let mut s = String::new();
    let k = r.config.members.max(1);
    let layers = |times: usize| {
        r.config
            .hidden
            .iter()
            .map(|h| (h * times).to_string())
            .collect::<Vec<_>>()
            .join("→")
    };
    let hidden = if k == 1 {
        layers(1)
    } else {
        let (merged, hidden) = (layers(k), layers(1));
        format!(
            "{merged} (the mean of {k} models of {hidden}, trained from {k} seeds and merged: each model's units side by side, later layers block-diagonal, the output the mean of their logits)"
        )
    };
    let activation = match r.config.activation {
        crate::ann::export::Activation::Relu => "ReLU".to_string(),
        crate::ann::export::Activation::LeakyRelu { alpha } => format!("LeakyReLU (slope {alpha})"),
    };
    let _ = write!(
        s,
        "# SafeLink base ANN model (`{v}`)\n\n\
_Generated by `safelink model train-base`; do not edit by hand, re-run the recipe._\n\n\
`base.onnx` ({bytes} bytes) is a small MLP that scores one finished flow: \
{N_FEATURES} raw features → log1p → standardise (training mean/std, inside the graph) → \
{hidden} {activation} → 1 → sigmoid. Score ≥ 0.90 (the default threshold) raises an `anomalous_flow` \
alert with `source: \"ann\"`. ONNX opset 13, IR 8, input `features` `[N, {N_FEATURES}]` f32, \
output `score` `[N, 1]`.\n\n\
Metadata: `feature_layout_version` = {layout} (kernel flow layout, \
`safelink_common::FEATURE_LAYOUT_VERSION`), `feature_vector_version` = {FEATURE_VECTOR_VERSION} \
(this table), `feature_names`, `model_version`, `metrics`, `training`. The sensor refuses \
a model whose versions or feature names differ from its own.\n\n\
## Reproduce\n\n```\n{command}\n```\n\n\
Deterministic: seeded initialisation and shuffling, single-threaded candle \
(`RAYON_NUM_THREADS=1`); the same captures give the same file. Training took {secs:.1} s here.\n\n",
        v = r.model_version,
        bytes = r.model_bytes,
        layout = safelink_common::FEATURE_LAYOUT_VERSION,
        secs = r.train_secs,
    );
    s.push_str("## Features (in order; raw values, scaling is inside the graph)\n\n");
    s.push_str(&markdown_table());
    let _ = write!(
        s,
        "\n## Training data and provenance\n\n\
Flows come from the capture directories {dirs} (each with a `MANIFEST.tsv`), replayed \
through the sensor's own feature code (`safelink::replay`, default flow timeouts). \
`tests/pcaps/` holds real public captures (provenance and licences in \
`tests/pcaps/README.md`); `models/lab/train/`, when listed, holds lab recordings made for \
training (below). Benign feature rows come besides from `models/benign/flows.csv.gz`: \
flows of public captures of real application traffic (IoT device set-up and day-to-day \
traffic, protocol samples of parser test suites), computed by the same feature code \
(`safelink analyze --features`); `models/benign/MANIFEST.tsv` names every capture (repository, \
commit, licence, flow count, why it counts as benign) and `models/benign/build.py` rebuilds \
the rows. Labels:\n\n\
- every flow of a `benign` capture, and every row of the benign feature rows, is benign (a \
fifth of each benign-row capture's flows is held out: row index ≡ capture number mod 5);\n\
- in an attack capture, a flow with the manifest's attacker address (or the victim, for the \
spoofed SYN flood and the SNMP reflection, whose sources are spoofed/reflectors) at either \
end is an attack — this includes the victim's replies and the little ICMP/SYN-ACK \
background the manifest mentions for the reflection capture;\n\
- other flows of attack captures are left out (neither known benign nor attack);\n\
- the ARP captures give no labelled flows of their own beyond those with the named IP \
(ARP is not a flow; ARP spoofing names only a MAC).\n\n\
Held-out (\"golden\") set: a flow is held out when FNV-1a(`file|src|sport|dst|dport|proto|\
first_ns`) mod 5 = 0; it is saved as `golden.jsonl` (one labelled feature vector per line) \
for the learner. The split is per flow, not per capture: flows of one attack look alike, so \
the held-out figures measure fit to these captures, not generalisation to unseen attacks or \
networks.\n\n\
Class balance: training {tr} flows ({ta} attack, {tb} benign); golden {gr} flows ({ga} \
attack, {gb} benign). A few floods, scans and the reflections (public and lab) are most of the \
attack flows, and a few long IoT captures most of the benign rows, so samples are weighted: the benign class weighs {bw}× the attack class in total, \
and within a class each capture weighs ∝ √(its flows). Every attack row is trained on twice: \
as recorded and with its host-context counts (`ctx_*`) shrunk to `c^u`, `u` uniform in [½, 1), \
the same attack made smaller or slower ({shrunk} copies; `recipe::shrunk_context`).{grown}\n\n\
{lab}\n\n\
| capture | class | flows | attack | benign | left out | golden |\n|---|---|---|---|---|---|---|\n",
        dirs = r
            .ann_alone
            .iter()
            .filter(|d| d.trained_on)
            .map(|d| format!("`{}`", d.dir))
            .collect::<Vec<_>>()
            .join(", "),
        lab = lab_text(r),
        bw = r.config.benign_weight,
        shrunk = r.context_shrunk_rows,
        grown = if r.load_grown_rows == 0 {
            String::new()
        } else {
            format!(
                " Every benign row with a load count above 1 (`ctx_dst_peers`, \
                 `ctx_pair_flows`) is trained on twice too: as recorded and with those counts \
                 grown to `c^(1/u)`, `u` uniform in (½, 1], but never past the largest count of \
                 any benign row, the same benign traffic in a busier minute ({} copies; \
                 `recipe::grown_load`).",
                r.load_grown_rows
            )
        },
        tr = r.train_rows,
        ta = r.train_attack,
        tb = r.train_rows - r.train_attack,
        gr = r.golden_rows,
        ga = r.golden_attack,
        gb = r.golden_rows - r.golden_attack,
    );
    for c in &r.captures {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.file, c.class, c.flows, c.attack, c.benign, c.unlabelled, c.golden
        );
    }
    let _ = write!(
        s,
        "\n## Training\n\ncandle 0.11 (CPU), AdamW lr {lr}, weight decay {wd}, batch {b}, {ep} \
epochs, seed {seed:#x}{members}, weighted numerically-stable BCE on logits. Final training \
loss {loss}. Export → reload with tract: max |tract − candle| over the golden rows = {pd:.2e}.\n\n\
## Metrics on the held-out (golden) set\n\n\
| set | threshold | flows | accuracy | precision | recall | FPR | ROC-AUC | TP / FP / TN / FN |\n\
|---|---|---|---|---|---|---|---|---|\n",
        lr = r.config.lr,
        wd = r.config.weight_decay,
        b = r.config.batch,
        ep = r.config.epochs,
        seed = r.config.seed,
        members = if k == 1 {
            String::new()
        } else {
            format!(
                " (members: seeds {:#x} to {:#x})",
                r.config.seed,
                r.config.seed.wrapping_add(k as u64 - 1)
            )
        },
        loss = r
            .member_final_loss
            .iter()
            .map(|l| format!("{l:.5}"))
            .collect::<Vec<_>>()
            .join(", "),
        pd = r.parity_max_abs_diff,
    );
    s.push_str(&metrics_row("golden", &r.golden_at_0_5));
    s.push_str(&metrics_row("golden", &r.golden_at_threshold));
    let neg = r.golden_at_threshold.negatives.max(1);
    let _ = write!(
        s,
        "\n{neg} golden flows are benign: an FPR of 0 there would bound the true rate below \
≈ {:.2} % (95 %, rule of three: 3/{neg}). Golden flows come from the same captures as the \
training flows (a fifth of each), so these figures measure fit, not generalisation to other \
networks.\n",
        300.0 / neg as f64
    );
    for (i, d) in r.ann_alone.iter().enumerate() {
        let e = &d.eval;
        let _ = write!(
            s,
            "\n## ANN alone on `{dir}`{kind} (DFA off, default threshold {thr:.2})\n\n\
    Every capture replayed through `AnnDetector` (the same path as `safelink analyze` / \
    `safelink run`), {which}. Flow recall {afa}/{af} = {rec:.4}; \
    benign flows alerting {bfa}/{bf} (FPR {fpr:.4}); attack captures with at least one ANN alert \
    {aca}/{ac}; benign captures with an ANN alert {bca}/{bc}.{asserted}\n\n\
    | capture | class | flows | attack ≥ thr | benign ≥ thr | left-out ≥ thr | alerts |\n\
    |---|---|---|---|---|---|---|\n",
            dir = d.dir,
            kind = if d.trained_on {
                ""
            } else {
                " — independent evaluation, never trained on"
            },
            which = if d.trained_on {
                "all flows (training and golden)"
            } else {
                "all flows (none of them seen in training)"
            },
            asserted = if i == 0 {
                " `tests/ann.rs` asserts these numbers against the shipped `base.onnx`."
            } else {
                ""
            },
            thr = e.threshold,
            afa = e.attack_flows_alerting,
            af = e.attack_flows,
            rec = e.flow_recall,
            bfa = e.benign_flows_alerting,
            bf = e.benign_flows,
            fpr = e.flow_false_positive_rate,
            aca = e.attack_captures_alerting,
            ac = e.attack_captures,
            bca = e.benign_captures_alerting,
            bc = e.benign_captures,
        );
        for c in &e.captures {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {}/{} | {}/{} | {}/{} | {} |",
                c.file,
                c.class,
                c.flows,
                c.attack_alerting,
                c.attack,
                c.benign_alerting,
                c.benign,
                c.unlabelled_alerting,
                c.unlabelled,
                c.alerts
            );
        }
    }
    s.push_str(
        "\n## Explanations\n\nAn alert's `explanation` lists the top features by occlusion: the \
score minus the score with that one feature set to the training mean (0 after the graph's \
normalisation). Positive = pushed towards attack. It costs one extra batch of 32 rows per \
explained flow.\n\n\
## Limits\n\n\
- Per-flow classifier: it does not see windows of flows (the DFA automata do), so slow \
brute force whose single connections look like ordinary sessions is harder for it.\n\
- The attack side comes from a few public captures, most of them small, and from the lab \
training recordings (one two-host link); the benign side adds \
the public captures of `models/benign/` (mostly home and IoT traffic, little IPv6, few long \
bulk transfers; see `models/benign/README.md`). On other networks it is checked only against \
the small lab set. Treat ANN alerts as a second opinion next to the automata.\n\
- ARP attacks are out of scope (no flows).\n\
- More benign data makes the model quieter and also less eager: read the lab table above for \
the attacks it misses there. Before the lab training captures it missed the hping3 FIN scan, \
the UDP and ICMP floods and the hydra run; with them it flags all seven, but the per-flow \
boundary now passes close to lone benign flows that look like one flow of a sweep, a \
spoofed flood or a reflection (a burst of unanswered echo requests, a single DNS answer): \
they are most of the held-out benign flows it flags.\n",
    );
    s
}
