//! `moss accounts import`: online accounts that no directory user is linked to (they carry no
//! anchor, `onPremisesImmutableId`) become directory users. It previews them (online id →
//! proposed user name), then writes an LDIF file of `inetOrgPerson` entries, which `ldapadd`
//! and `ldifde` read, and a temporary-password file (mode 0600, one line per user:
//! `user name<TAB>online id<TAB>temporary password`). The LDIF carries only a salted hash of
//! each temporary password (`{SSHA}`), never the clear text.
//!
//! Once the entries are in the directory, each new entry is linked to its online account with
//! `moss accounts assign --subject <entryUUID> --existing <online id>` (the worker writes the
//! anchor on the existing account, and password changes flow from then on).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::Args;
use moss_online::User;
use moss_schemas::AccountName;
use rand::Rng;
use rand::seq::SliceRandom;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::ldif::{self, Entry, escape_dn_value};
use super::tenant_view::TenantView;
use super::{TenantReadArgs, confirm};
use crate::config::FileConfig;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Where the new entries go, e.g. ou=people,dc=example,dc=org.
    #[arg(long, value_name = "DN")]
    base_dn: String,
    /// The LDIF file to write (refused if it exists).
    #[arg(long, value_name = "FILE")]
    ldif: PathBuf,
    /// The temporary-password file to write, mode 0600 (refused if it exists).
    #[arg(long, value_name = "FILE")]
    passwords: PathBuf,
    /// Show the preview and stop.
    #[arg(long)]
    dry_run: bool,
    /// Write without asking.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    tenant: TenantReadArgs,
}

/// One online account to become a directory user.
#[derive(Debug)]
struct Proposal<'a> {
    user: &'a User,
    upn: String,
    name: AccountName,
}

pub(crate) async fn run(args: ImportArgs, file: &FileConfig) -> Result<()> {
    let base_dn = args.base_dn.trim();
    if base_dn.is_empty() || !base_dn.contains('=') {
        bail!("--base-dn {base_dn:?}: not a DN (e.g. ou=people,dc=example,dc=org)");
    }
    for (flag, path) in [("--ldif", &args.ldif), ("--passwords", &args.passwords)] {
        if path.exists() {
            bail!(
                "{flag} {}: the file exists already; move it away or name another (moss never overwrites it)",
                path.display()
            );
        }
    }
    let client = args.tenant.client(file)?;
    let tenant = TenantView::read(&client).await?;
    let mut proposals = Vec::new();
    let mut skipped = Vec::new();
    let mut names = HashSet::new();
    for user in &tenant.users {
        if user.on_premises_immutable_id.is_some() {
            continue;
        }
        let Some(upn) = user.user_principal_name.clone() else {
            continue;
        };
        let local = upn.split('@').next().unwrap_or_default();
        let name = match AccountName::parse(local) {
            Ok(name) => name,
            Err(error) => {
                skipped.push(format!(
                    "{upn}: {local} cannot be a user name ({})",
                    error.message
                ));
                continue;
            }
        };
        if !names.insert(name.as_str().to_ascii_lowercase()) {
            skipped.push(format!(
                "{upn}: the user name {name} is proposed for another account too"
            ));
            continue;
        }
        proposals.push(Proposal { user, upn, name });
    }
    println!(
        "{} online accounts have no directory user; proposed user names:",
        proposals.len()
    );
    for proposal in &proposals {
        println!(
            "  {:<40} → {:<24} {}",
            proposal.upn,
            proposal.name.as_str(),
            proposal.user.display_name.as_deref().unwrap_or("")
        );
    }
    if !skipped.is_empty() {
        println!("left out:");
        for reason in &skipped {
            println!("  {reason}");
        }
    }
    if proposals.is_empty() {
        println!("nothing to import");
        return Ok(());
    }
    if args.dry_run {
        println!("dry run: nothing was written");
        return Ok(());
    }
    if !confirm(
        args.yes,
        &format!(
            "Write {} directory entries to {} and their temporary passwords to {}?",
            proposals.len(),
            args.ldif.display(),
            args.passwords.display()
        ),
    )? {
        println!("nothing was written");
        return Ok(());
    }
    let mut entries = Vec::with_capacity(proposals.len());
    let mut password_lines = Zeroizing::new(String::new());
    for proposal in &proposals {
        let password = temporary_password();
        entries.push(entry_for(proposal, base_dn, &password));
        password_lines.push_str(&format!(
            "{}\t{}\t{}\n",
            proposal.name.as_str(),
            proposal.upn,
            password.as_str()
        ));
    }
    write_new(&args.passwords, password_lines.as_bytes(), 0o600)?;
    write_new(&args.ldif, ldif::write(&entries).as_bytes(), 0o600)?;
    println!(
        "wrote {} entries to {} and their temporary passwords to {} (mode 0600)",
        entries.len(),
        args.ldif.display(),
        args.passwords.display()
    );
    println!(
        "next: `ldapadd -f {}` (or `ldifde -i -f`), hand each user their temporary password, then link each entry: `moss accounts assign --subject <entryUUID> --existing <online id>`",
        args.ldif.display()
    );
    Ok(())
}

fn entry_for(proposal: &Proposal<'_>, base_dn: &str, password: &str) -> Entry {
    let user = proposal.user;
    let name = proposal.name.as_str();
    let display = user
        .display_name
        .clone()
        .filter(|display| !display.trim().is_empty())
        .unwrap_or_else(|| name.to_owned());
    // inetOrgPerson requires cn and sn; sn falls back to the display name.
    let surname = user.surname.clone().unwrap_or_else(|| display.clone());
    let mut attributes = vec![
        ("objectClass".to_owned(), "top".to_owned()),
        ("objectClass".to_owned(), "person".to_owned()),
        ("objectClass".to_owned(), "organizationalPerson".to_owned()),
        ("objectClass".to_owned(), "inetOrgPerson".to_owned()),
        ("uid".to_owned(), name.to_owned()),
        ("cn".to_owned(), display.clone()),
        ("sn".to_owned(), surname),
    ];
    if let Some(given) = &user.given_name {
        attributes.push(("givenName".to_owned(), given.clone()));
    }
    attributes.push(("displayName".to_owned(), display));
    attributes.push(("mail".to_owned(), proposal.upn.clone()));
    attributes.push(("userPassword".to_owned(), ssha(password)));
    Entry {
        dn: format!("uid={},{base_dn}", escape_dn_value(name)),
        attributes,
    }
}

/// `{SSHA}` of RFC 2307bis practice: base64(SHA-1(password ‖ salt) ‖ salt), 8 random salt bytes.
fn ssha(password: &str) -> String {
    let mut salt = [0_u8; 8];
    rand::rng().fill(&mut salt);
    let mut hasher = Sha1::new();
    hasher.update(password.as_bytes());
    hasher.update(salt);
    let mut bytes = hasher.finalize().to_vec();
    bytes.extend_from_slice(&salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// 16 characters from four classes (no look-alikes), for the user to change at first sign-in.
fn temporary_password() -> Zeroizing<String> {
    const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGITS: &[u8] = b"23456789";
    const SYMBOLS: &[u8] = b"!#%+-=?@_";
    let mut rng = rand::rng();
    let mut bytes = Zeroizing::new(Vec::with_capacity(16));
    for (class, count) in [(LOWER, 6), (UPPER, 4), (DIGITS, 3), (SYMBOLS, 3)] {
        for _ in 0..count {
            bytes.push(class[rng.random_range(0..class.len())]);
        }
    }
    bytes.shuffle(&mut rng);
    Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned())
}

/// Creates `path` (never overwriting) with `mode` from the start, so the content is never
/// readable by others even for a moment.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_salted_hash_checks_against_its_password() {
        let hashed = ssha("Temp-Passw0rd!");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(hashed.trim_start_matches("{SSHA}"))
            .unwrap();
        let (digest, salt) = bytes.split_at(20);
        let mut hasher = Sha1::new();
        hasher.update(b"Temp-Passw0rd!");
        hasher.update(salt);
        assert_eq!(hasher.finalize().as_slice(), digest);
    }

    #[test]
    fn temporary_passwords_have_every_class() {
        let password = temporary_password();
        assert_eq!(password.len(), 16);
        assert!(password.chars().any(|c| c.is_ascii_lowercase()));
        assert!(password.chars().any(|c| c.is_ascii_uppercase()));
        assert!(password.chars().any(|c| c.is_ascii_digit()));
        assert!(password.chars().any(|c| !c.is_ascii_alphanumeric()));
    }
}
