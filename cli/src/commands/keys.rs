//! `moss keys generate`: a key pair for sealing passwords between the producer and the workers.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;

/// File name of the public half (an age X25519 recipient, `age1…`): give it to producers.
pub(crate) const PUBLIC_KEY_FILE: &str = "moss-seal.pub";
/// File name of the private half (`AGE-SECRET-KEY-1…`, mode 0600): only workers read it.
pub(crate) const PRIVATE_KEY_FILE: &str = "moss-seal.key";

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Write a new key pair: the public key seals passwords at the producer, the private key
    /// (mode 0600) opens them in the workers.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Folder to write moss-seal.pub and moss-seal.key into (created 0700 if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Replace an existing key pair. Passwords sealed to the old key can then no longer be opened.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Generate(args) => {
            let overwrite = if args.force {
                Overwrite::Replace
            } else {
                Overwrite::Refuse
            };
            let written = generate(&args.out, overwrite)?;
            println!(
                "public key  {}  ({})",
                written.public_key,
                written.public_path.display()
            );
            println!(
                "private key {}  (mode 0600; only workers need it)",
                written.private_path.display()
            );
            Ok(())
        }
    }
}

/// Whether an existing key pair may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overwrite {
    Refuse,
    Replace,
}

/// Where a generated pair went, and the public key to hand to producers.
#[derive(Debug)]
pub(crate) struct WrittenKeyPair {
    pub(crate) public_key: String,
    pub(crate) public_path: PathBuf,
    pub(crate) private_path: PathBuf,
}

/// Generates a pair into `dir`. The private key file is created with mode 0600 from the start
/// (never written first and narrowed later), so no other user can catch it readable.
pub(crate) fn generate(dir: &Path, overwrite: Overwrite) -> Result<WrittenKeyPair> {
    if !dir.exists() {
        fs::create_dir_all(dir)
            .with_context(|| format!("could not create the folder {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("could not make {} private (0700)", dir.display()))?;
    }
    let public_path = dir.join(PUBLIC_KEY_FILE);
    let private_path = dir.join(PRIVATE_KEY_FILE);
    if overwrite == Overwrite::Refuse && (public_path.exists() || private_path.exists()) {
        bail!(
            "a key pair already exists in {}; pass --force to replace it (passwords sealed to the old key will no longer open)",
            dir.display()
        );
    }
    let pair = moss_schemas::keys::generate_key_pair();

    let _ = fs::remove_file(&private_path);
    let mut private = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private_path)
        .with_context(|| {
            format!(
                "could not create the private key file {}",
                private_path.display()
            )
        })?;
    writeln!(private, "{}", pair.private.expose_secret())
        .and_then(|()| private.sync_all())
        .with_context(|| {
            format!(
                "could not write the private key file {}",
                private_path.display()
            )
        })?;

    fs::write(&public_path, format!("{}\n", pair.public)).with_context(|| {
        format!(
            "could not write the public key file {}",
            public_path.display()
        )
    })?;
    Ok(WrittenKeyPair {
        public_key: pair.public,
        public_path,
        private_path,
    })
}

/// Reads a key from a file written by [`generate`] (or by `age-keygen`), ignoring comment lines.
pub(crate) fn read_key_file(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("could not read the key file {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .with_context(|| format!("the key file {} holds no key", path.display()))
}
