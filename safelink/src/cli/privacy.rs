//! `safelink privacy forget|report`: deletion on request and the privacy report, offline on
//! the store of a stopped sensor (with the daemon running, use `DELETE /privacy/subject` and
//! `GET /privacy/report`). Both read `[privacy]` from the configuration (and the key from
//! `SAFELINK_PRIVACY_KEY`) so the anonymised forms of a subject are matched too.
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgGroup, Args, Subcommand};
use safelink::{
    privacy::{self, Policy, Subject},
    store::{Store, StoreError},
};
use serde_json::json;

#[derive(Debug, Args)]
pub struct PrivacyArgs {
    #[command(subcommand)]
    cmd: PrivacyCmd,
}

#[derive(Debug, Subcommand)]
enum PrivacyCmd {
    /// Delete every alert, archived alert and training sample about one IP or MAC address
    /// (as seen or in its anonymised form), on a stopped sensor's store. Prints the counts
    /// per tree as JSON. A model already trained on deleted samples stays.
    Forget(ForgetArgs),
    /// Print what is stored, in which form and for how long, as JSON.
    Report(StoreArgs),
}

/// Where the store and the `[privacy]` section come from.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    file: super::run::FileArgs,
    #[command(flatten)]
    data: super::run::DataArgs,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("subject").required(true).args(["ip", "mac"])))]
pub struct ForgetArgs {
    /// The IP address whose data is deleted.
    #[arg(long, value_name = "IP")]
    ip: Option<String>,
    /// The MAC address whose data is deleted.
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

impl StoreArgs {
    /// The policy and the opened store (which must exist and not be held by a running sensor).
    fn open(&self) -> anyhow::Result<(Policy, Store)> {
        let mut cfg = self.file.load()?;
        self.data.apply(&mut cfg);
        let policy = Policy::from_env(&cfg.privacy)
            .map_err(|e| anyhow::anyhow!("invalid [privacy] configuration: {e}"))?;
        let dir = cfg.store.data_dir.join("store");
        if !dir.is_dir() {
            anyhow::bail!("no alert store in {} (check --data-dir)", dir.display());
        }
        let store = Store::open(&dir).map_err(|e| open_error(e, &dir))?;
        Ok((policy, store))
    }
}

/// Explains a store that cannot be opened, naming the running-daemon case.
fn open_error(e: StoreError, dir: &std::path::Path) -> anyhow::Error {
    if let StoreError::Sled(sled::Error::Io(io)) = &e
        && (io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock"))
    {
        return anyhow::anyhow!(
            "the alert store in {} is locked by a running sensor: stop `safelink run` first, or \
             use the API (DELETE /privacy/subject, GET /privacy/report) while it runs ({io})",
            dir.display()
        );
    }
    anyhow::Error::new(e).context(format!("cannot open the alert store in {}", dir.display()))
}

pub fn privacy(a: PrivacyArgs) -> anyhow::Result<ExitCode> {
    match a.cmd {
        PrivacyCmd::Forget(f) => {
            let subject = match (&f.ip, &f.mac) {
                (Some(ip), None) => Subject::parse_ip(ip)?,
                (None, Some(mac)) => Subject::parse_mac(mac)?,
                _ => anyhow::bail!("give exactly one of --ip or --mac"),
            };
            let (policy, store) = f.store.open()?;
            let deleted = privacy::forget(&store, &policy, subject)
                .context("deleting from the alert store")?;
            println!("{}", json!({ "subject": subject, "deleted": deleted }));
        }
        PrivacyCmd::Report(s) => {
            let (policy, store) = s.open()?;
            let r = privacy::report(&store, &policy).context("reading the alert store")?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
