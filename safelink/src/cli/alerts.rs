//! `safelink alerts verdict ID --verdict false_positive|confirmed`: the operator's verdict on
//! an alert of a running sensor, sent to its API (`POST /alerts/{id}/verdict`, token from
//! `SAFELINK_API_TOKEN`). The sensor's store is in use while it runs, so this goes through the
//! API rather than the store.
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use safelink::learn::Verdict;

#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    cmd: AlertsCmd,
}

#[derive(Debug, Subcommand)]
enum AlertsCmd {
    /// Tell the learner an alert was a false positive or a real attack; the next training
    /// cycle learns from it (prints the API's answer as JSON).
    Verdict {
        /// Alert id (as in `GET /alerts`).
        #[arg(value_name = "ID")]
        id: u64,
        #[arg(long, value_enum)]
        verdict: Verdict,
        /// The sensor's API.
        #[arg(long, default_value = "http://127.0.0.1:8000", env = "SAFELINK_API")]
        api: String,
        /// API token [default: SAFELINK_API_TOKEN].
        #[arg(long, env = "SAFELINK_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

pub fn alerts(a: AlertsArgs) -> anyhow::Result<ExitCode> {
    match a.cmd {
        AlertsCmd::Verdict {
            id,
            verdict,
            api,
            token,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let url = format!("{}/alerts/{id}/verdict", api.trim_end_matches('/'));
            let (status, body) = rt.block_on(async {
                let mut req = reqwest::Client::new()
                    .post(&url)
                    .json(&serde_json::json!({ "verdict": verdict }));
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let r = req.send().await.with_context(|| format!("POST {url}"))?;
                let status = r.status();
                let body = r.text().await.context("reading the answer")?;
                anyhow::Ok((status, body))
            })?;
            println!("{body}");
            if status.is_success() {
                Ok(ExitCode::SUCCESS)
            } else {
                let why = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or(body);
                anyhow::bail!("{status}: {why}")
            }
        }
    }
}
