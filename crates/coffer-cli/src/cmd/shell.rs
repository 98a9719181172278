//! `coffer completions SHELL` and the hidden `coffer man --out DIR`: what a package installs
//! so the shell completes coffer's commands and `man coffer-secrets-set` answers.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

/// Options of `coffer completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Options of `coffer man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing): coffer.1 and one
    /// coffer-COMMAND[-SUBCOMMAND].1 per command
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Prints the completion script for `args.shell` on standard output.
pub fn completions(mut command: clap::Command, args: CompletionsArgs) -> anyhow::Result<()> {
    let name = command.get_name().to_owned();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, name, &mut out);
    Ok(())
}

/// Writes a man page for the command and each of its visible subcommands.
pub fn man(mut command: clap::Command, args: ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    command.build();
    let mut written = 0;
    page(&command, None, &args.out, &mut written)?;
    eprintln!("wrote {written} man pages in {}", args.out.display());
    Ok(())
}

fn page(
    command: &clap::Command,
    parent: Option<&str>,
    dir: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let name = match parent {
        Some(p) => format!("{p}-{}", command.get_name()),
        None => command.get_name().to_owned(),
    };
    let titled = command
        .clone()
        .name(name.clone())
        .bin_name(name.replace('-', " "));
    let mut text = Vec::new();
    clap_mangen::Man::new(titled)
        .render(&mut text)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let file = dir.join(format!("{name}.1"));
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    *written += 1;
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        page(sub, Some(&name), dir, written)?;
    }
    Ok(())
}
