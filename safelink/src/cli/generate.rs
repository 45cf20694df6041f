//! `safelink generate man|bash|zsh|fish --out DIR`: the man page and shell completions, from
//! the clap definitions (packaging: `cargo xtask deb`, `cargo xtask install`).
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::Cli;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum What {
    /// `safelink.1` and one page per subcommand (`safelink-run.1`, ...).
    Man,
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[arg(value_enum)]
    what: What,
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn generate(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut cmd = Cli::command();
    let written = match a.what {
        What::Man => {
            cmd.build();
            let mut pages = vec![a.out.join("safelink.1")];
            write_page(&cmd, "safelink", &pages[0])?;
            for sub in cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            {
                let name = format!("safelink-{}", sub.get_name());
                let page = a.out.join(format!("{name}.1"));
                write_page(sub, &name, &page)?;
                pages.push(page);
            }
            pages
        }
        What::Bash | What::Zsh | What::Fish => {
            let shell = match a.what {
                What::Bash => Shell::Bash,
                What::Zsh => Shell::Zsh,
                _ => Shell::Fish,
            };
            vec![clap_complete::generate_to(
                shell, &mut cmd, "safelink", &a.out,
            )?]
        }
    };
    for p in written {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(cmd: &clap::Command, title: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(title.to_uppercase())
        .section("1")
        .render(&mut buf)?;
    std::fs::write(path, buf).with_context(|| format!("cannot write {}", path.display()))
}
