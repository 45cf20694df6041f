//! Starting `safelink run` in a test: the sensor spawned with its stdout piped, its first line
//! (`ATTACHED ...`, once the XDP program is attached and the API is up) awaited within a
//! deadline, its later stdout read and dropped on a thread. A sensor that does not attach is
//! killed and the test panics with what it printed.
use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, RecvTimeoutError},
    time::Duration,
};

/// How long a sensor may take to attach (the model, the BPF programs, a loaded CI machine).
pub const ATTACH_WITHIN: Duration = Duration::from_secs(30);

/// Spawns `cmd` (a `safelink run`) with its stdout piped and returns it once its first line
/// starts with `ATTACHED `, at most `within` after the spawn. Its stderr goes to the file
/// `log` (created) when given, else where `cmd` sends it. Its later stdout is read and dropped,
/// so it never writes into a closed pipe.
///
/// A sensor that prints something else first, ends, or stays silent is killed, and the test
/// panics with the command, its stdout, its exit status and its stderr (from `log`, or from
/// the pipe when `cmd` piped it; an inherited stderr is already in the test's output).
pub fn spawn_attached(mut cmd: Command, within: Duration, log: Option<&Path>) -> Child {
    if let Some(p) = log {
        let f = std::fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        cmd.stderr(f);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        let mut listening = true;
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            listening = listening && tx.send(l).is_ok();
        }
    });
    let (problem, mut printed) = match lines.recv_timeout(within) {
        Ok(l) if l.starts_with("ATTACHED ") => return child,
        Ok(l) => ("printed something else first".to_owned(), vec![l]),
        Err(RecvTimeoutError::Timeout) => (format!("printed nothing within {within:?}"), vec![]),
        Err(RecvTimeoutError::Disconnected) => ("closed its stdout".to_owned(), vec![]),
    };
    let _ = child.kill();
    let status = child
        .wait()
        .map_or_else(|e| format!("unknown ({e})"), |s| s.to_string());
    // The pipe closes with the sensor; what it wrote until then is still to be read.
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(2)) {
        printed.push(l);
    }
    let stderr = match (log, child.stderr.take()) {
        (Some(p), _) => std::fs::read_to_string(p).unwrap_or_else(|e| format!("({e})")),
        (None, Some(mut pipe)) => {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        }
        (None, None) => "(not captured: inherited, above, or discarded)".to_owned(),
    };
    panic!(
        "the sensor did not attach: it {problem} ({status})\n\
         command: {cmd:?}\n--- stdout\n{}\n--- stderr\n{stderr}",
        printed.join("\n")
    );
}
