//! `moss accounts import`: online accounts that no directory user is linked to (they carry no
//! anchor, `onPremisesImmutableId`) become directory users. It previews them (online id →
//! proposed user name), then, confirmed, either
//!
//! - adds them to the directory over LDAP when one is configured (`MOSS_LDAP_URL` and the
//!   watcher's other `MOSS_LDAP_*` settings): one add per entry, each reported as added, already
//!   present or failed with its LDAP result; a rerun skips the entries present; or
//! - writes an LDIF file of `inetOrgPerson` entries, which `ldapadd` and `ldifde` read.
//!
//! Either way the temporary passwords go to a file (mode 0600, one line per user:
//! `user name<TAB>online id<TAB>temporary password`), never to standard output; the entries
//! carry only a salted hash of each (`userPassword: {SSHA}…`), so entry and password arrive in
//! one add. Active Directory is refused for direct writes: it takes a password only as
//! `unicodePwd` over LDAPS, which moss does not write.
//!
//! Once the entries are in the directory, each new entry is linked to its online account with
//! `moss accounts assign --subject <entryUUID> --existing <online id>` (printed with the
//! entryUUIDs when moss added them).

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

use moss_producer::watch::AddOutcome;

use super::directory::DirectoryArgs;
use super::ldif::{self, Entry, escape_dn_value};
use super::tenant_view::TenantView;
use super::{TenantReadArgs, confirm};
use crate::config::FileConfig;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Where the new entries go, e.g. ou=people,dc=example,dc=org.
    #[arg(long, value_name = "DN")]
    base_dn: String,
    /// The LDIF file to write (refused if it exists). Needed when no directory is configured;
    /// with one, optional: the LDIF of the entries added.
    #[arg(long, value_name = "FILE")]
    ldif: Option<PathBuf>,
    /// The temporary-password file to write, mode 0600 (refused if it exists).
    #[arg(long, value_name = "FILE")]
    passwords: PathBuf,
    /// Write the LDIF only, even when a directory is configured (MOSS_LDAP_URL).
    #[arg(long, requires = "ldif")]
    no_directory: bool,
    /// Show the preview and stop.
    #[arg(long)]
    dry_run: bool,
    /// Write without asking.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    tenant: TenantReadArgs,
    #[command(flatten)]
    directory: DirectoryArgs,
}

/// One online account to become a directory user.
#[derive(Debug)]
struct Proposal<'a> {
    user: &'a User,
    upn: String,
    name: AccountName,
    dn: String,
    /// In the directory already (a rerun): its entryUUID, when the directory has one.
    present: Option<Option<String>>,
}

pub(crate) async fn run(args: ImportArgs, file: &FileConfig) -> Result<()> {
    let base_dn = args.base_dn.trim();
    if base_dn.is_empty() || !base_dn.contains('=') {
        bail!("--base-dn {base_dn:?}: not a DN (e.g. ou=people,dc=example,dc=org)");
    }
    let directory = if args.no_directory {
        None
    } else {
        args.directory.settings()?
    };
    if directory.is_none() && args.ldif.is_none() {
        bail!(
            "--ldif: name the LDIF file to write (no directory is configured, MOSS_LDAP_URL is unset, so moss writes the entries to a file)"
        );
    }
    for (flag, path) in [
        ("--ldif", args.ldif.as_ref()),
        ("--passwords", Some(&args.passwords)),
    ] {
        if let Some(path) = path
            && path.exists()
        {
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
        let dn = format!("uid={},{base_dn}", escape_dn_value(name.as_str()));
        proposals.push(Proposal {
            user,
            upn,
            name,
            dn,
            present: None,
        });
    }
    // With a directory: which are there already (a rerun), and which names are taken elsewhere.
    let mut connection = None;
    if let Some(settings) = &directory {
        let mut ldap = settings.connect().await?;
        if ldap.is_active_directory().await? {
            bail!(
                "the directory at {} is Active Directory, where moss does not add users: AD sets a password only through unicodePwd over LDAPS, which moss does not write (nor could test). Write the LDIF instead (--no-directory --ldif FILE), import it with `ldifde -i -f FILE` and set each temporary password in AD",
                settings.url
            );
        }
        let search_base = settings.base().unwrap_or(base_dn).to_owned();
        let mut kept = Vec::with_capacity(proposals.len());
        for mut proposal in proposals {
            let holders = ldap
                .find(&search_base, "uid", proposal.name.as_str())
                .await?;
            let ours = normalise(&proposal.dn);
            if let Some(other) = holders.iter().find(|dn| normalise(dn) != ours) {
                skipped.push(format!(
                    "{}: the user name {} is taken in the directory by {other}",
                    proposal.upn, proposal.name
                ));
                continue;
            }
            let uuid = ldap.entry_uuid(&proposal.dn).await?;
            if !holders.is_empty() || uuid.is_some() {
                proposal.present = Some(uuid);
            }
            kept.push(proposal);
        }
        proposals = kept;
        connection = Some(ldap);
    }
    let present = proposals.iter().filter(|p| p.present.is_some()).count();
    println!(
        "{} online accounts have no directory user; proposed user names:",
        proposals.len()
    );
    for proposal in &proposals {
        println!(
            "  {:<40} → {:<24} {}{}",
            proposal.upn,
            proposal.name.as_str(),
            proposal.user.display_name.as_deref().unwrap_or(""),
            if proposal.present.is_some() {
                "  (in the directory already)"
            } else {
                ""
            }
        );
    }
    if !skipped.is_empty() {
        println!("left out:");
        for reason in &skipped {
            println!("  {reason}");
        }
    }
    if let Some(settings) = &directory {
        println!(
            "directory: {} (entries under {base_dn}: {} to add, {present} there already)",
            settings.url,
            proposals.len() - present
        );
        if !settings.watches(base_dn) {
            println!(
                "note: {base_dn} is outside the subtree the watcher follows (MOSS_LDAP_BASE); moss will not see these users"
            );
        }
    }
    let Some(mut ldap) = connection else {
        return write_files(&args, &proposals);
    };
    let to_add: Vec<&Proposal<'_>> = proposals.iter().filter(|p| p.present.is_none()).collect();
    if to_add.is_empty() {
        println!("nothing to add");
        print_links(&proposals, &[]);
        ldap.close().await;
        return Ok(());
    }
    if args.dry_run {
        println!("dry run: nothing was written");
        ldap.close().await;
        return Ok(());
    }
    if !confirm(
        args.yes,
        &format!(
            "Add {} entries to the directory at {} and write their temporary passwords to {}?",
            to_add.len(),
            ldap.url(),
            args.passwords.display()
        ),
    )? {
        println!("nothing was written");
        ldap.close().await;
        return Ok(());
    }
    // The password file exists (0600) before the first add and gets each line as soon as its
    // entry is added: it always holds exactly the entries added, whatever stops the run.
    let mut passwords = create_new(&args.passwords, 0o600)?;
    let mut added = Vec::new();
    let mut failed = Vec::new();
    let mut already = 0_usize;
    let mut broken = None;
    for proposal in &to_add {
        if broken.is_some() {
            failed.push(format!("{}: not tried (the connection broke)", proposal.dn));
            continue;
        }
        let password = temporary_password();
        let entry = entry_for(proposal, &password);
        match ldap.add(&entry.dn, &entry.attributes).await {
            Ok(AddOutcome::Added) => {
                let line = Zeroizing::new(format!(
                    "{}\t{}\t{}\n",
                    proposal.name.as_str(),
                    proposal.upn,
                    password.as_str()
                ));
                passwords
                    .write_all(line.as_bytes())
                    .and_then(|()| passwords.sync_data())
                    .with_context(|| {
                        format!(
                            "{} was added but its password could not be written to {}; reset it in the directory",
                            entry.dn,
                            args.passwords.display()
                        )
                    })?;
                println!("  added           {}", entry.dn);
                added.push(entry);
            }
            Ok(AddOutcome::AlreadyPresent) => {
                println!("  already present {}", entry.dn);
                already += 1;
            }
            Ok(AddOutcome::Failed { rc, text }) => {
                let result = ldap_result(rc, &text);
                println!("  failed          {}: {result}", entry.dn);
                failed.push(format!("{}: {result}", entry.dn));
            }
            Err(error) => {
                println!("  failed          {}: {error}", entry.dn);
                failed.push(format!(
                    "{}: {error} (read it back: it may have been added)",
                    entry.dn
                ));
                broken = Some(error);
            }
        }
    }
    drop(passwords);
    if added.is_empty() {
        let _ = std::fs::remove_file(&args.passwords);
    }
    if let Some(path) = &args.ldif
        && !added.is_empty()
    {
        write_new(path, ldif::write(&added).as_bytes(), 0o600)?;
        println!(
            "wrote the {} entries added to {}",
            added.len(),
            path.display()
        );
    }
    println!(
        "added {}, already present {}, failed {}",
        added.len(),
        present + already,
        failed.len()
    );
    if !added.is_empty() {
        println!(
            "the temporary passwords of the {} entries added are in {} (mode 0600): hand each user theirs",
            added.len(),
            args.passwords.display()
        );
    }
    if broken.is_none() {
        let added_dns: Vec<&str> = added.iter().map(|entry| entry.dn.as_str()).collect();
        let mut uuids = Vec::new();
        for dn in &added_dns {
            uuids.push(ldap.entry_uuid(dn).await.ok().flatten());
        }
        print_links(
            &proposals,
            &added_dns.iter().copied().zip(uuids).collect::<Vec<_>>(),
        );
        ldap.close().await;
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} entries were not added:\n  {}\nrun the command again with a new --passwords file to add them (entries in the directory already are skipped)",
            failed.len(),
            to_add.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// "LDAP result 32 (noSuchObject): text" for a failed add.
fn ldap_result(rc: u32, text: &str) -> String {
    let name = match rc {
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        _ => "",
    };
    let mut line = format!("LDAP result {rc}");
    if !name.is_empty() {
        line.push_str(&format!(" ({name})"));
    }
    if !text.trim().is_empty() {
        line.push_str(&format!(": {}", text.trim()));
    }
    line
}

/// How moss compares DNs: lower case, no spaces after commas.
fn normalise(dn: &str) -> String {
    dn.split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase()
}

/// The command that links each entry in the directory to its online account.
fn print_links(proposals: &[Proposal<'_>], added: &[(&str, Option<String>)]) {
    let mut lines = Vec::new();
    for proposal in proposals {
        let uuid = match &proposal.present {
            Some(uuid) => uuid.clone(),
            None => match added.iter().find(|(dn, _)| *dn == proposal.dn) {
                Some((_, uuid)) => uuid.clone(),
                None => continue,
            },
        };
        lines.push(format!(
            "  moss accounts assign --subject {} --existing {}",
            uuid.as_deref().unwrap_or("<entryUUID>"),
            proposal.upn
        ));
    }
    if !lines.is_empty() {
        println!("next, link each entry to its online account:");
        for line in lines {
            println!("{line}");
        }
    }
}

/// No directory: the LDIF and the password file, as before.
fn write_files(args: &ImportArgs, proposals: &[Proposal<'_>]) -> Result<()> {
    let Some(ldif_path) = &args.ldif else {
        bail!("--ldif: name the LDIF file to write");
    };
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
            ldif_path.display(),
            args.passwords.display()
        ),
    )? {
        println!("nothing was written");
        return Ok(());
    }
    let mut entries = Vec::with_capacity(proposals.len());
    let mut password_lines = Zeroizing::new(String::new());
    for proposal in proposals {
        let password = temporary_password();
        entries.push(entry_for(proposal, &password));
        password_lines.push_str(&format!(
            "{}\t{}\t{}\n",
            proposal.name.as_str(),
            proposal.upn,
            password.as_str()
        ));
    }
    write_new(&args.passwords, password_lines.as_bytes(), 0o600)?;
    write_new(ldif_path, ldif::write(&entries).as_bytes(), 0o600)?;
    println!(
        "wrote {} entries to {} and their temporary passwords to {} (mode 0600)",
        entries.len(),
        ldif_path.display(),
        args.passwords.display()
    );
    println!(
        "next: `ldapadd -f {}` (or `ldifde -i -f`), hand each user their temporary password, then link each entry: `moss accounts assign --subject <entryUUID> --existing <online id>`",
        ldif_path.display()
    );
    Ok(())
}

fn entry_for(proposal: &Proposal<'_>, password: &str) -> Entry {
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
        dn: proposal.dn.clone(),
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
fn create_new(path: &Path, mode: u32) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))
}

/// [`create_new`] with `bytes` in it, synced.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = create_new(path, mode)?;
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
    fn a_failed_add_names_its_ldap_result() {
        assert_eq!(
            ldap_result(50, " no write access "),
            "LDAP result 50 (insufficientAccessRights): no write access"
        );
        assert_eq!(ldap_result(32, ""), "LDAP result 32 (noSuchObject)");
        assert_eq!(ldap_result(80, "other"), "LDAP result 80: other");
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
