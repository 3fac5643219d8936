//! A real OpenLDAP for the watcher's tests: slapd from Debian's package with a throw-away
//! configuration (`slapd.conf` here) in a temp dir, on a free loopback port, driven with
//! `ldapadd`/`ldapmodify` as an administrator would.

#![allow(dead_code, unreachable_pub)] // each test uses a different part

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "secret";
pub const BASE: &str = "dc=example,dc=org";
const SLAPD: &str = "/usr/sbin/slapd";

/// One slapd process; killed when dropped.
#[derive(Debug)]
pub struct Slapd {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Slapd {
    /// Starts slapd on a free port with an empty database and the base entries.
    pub fn start() -> Slapd {
        assert!(
            Path::new(SLAPD).exists(),
            "slapd is missing: install Debian's slapd and ldap-utils packages"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let config = include_str!("slapd.conf").replace("@DIR@", dir.path().to_str().unwrap());
        std::fs::write(dir.path().join("slapd.conf"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut slapd = Slapd {
            dir,
            port,
            child: None,
        };
        slapd.resume();
        slapd.apply("ldapadd", include_str!("base.ldif"));
        slapd
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port and database.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "slapd is already running");
        let config: PathBuf = self.dir.path().join("slapd.conf");
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let child = Command::new(SLAPD)
                .arg("-f")
                .arg(&config)
                .arg("-h")
                .arg(self.url())
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("slapd starts");
            self.child = Some(child);
            if self.wait_listening() {
                return;
            }
            // The port may still be held by the slapd just killed: try again until the deadline.
            self.kill();
            assert!(
                Instant::now() < until,
                "slapd did not start listening on {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_listening(&mut self) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills slapd at once (SIGKILL), as a crash or a pulled cable would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `ldapadd`/`ldapmodify` as the administrator with `ldif` on its standard input.
    pub fn apply(&self, tool: &str, ldif: &str) {
        let mut child = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{tool} runs (install ldap-utils): {error}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `ldapmodify` with `ldif`.
    pub fn modify(&self, ldif: &str) {
        self.apply("ldapmodify", ldif);
    }

    /// The entryUUID of `dn`, as ldapsearch shows it.
    pub fn entry_uuid(&self, dn: &str) -> String {
        let output = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .args(["-s", "base", "-b", dn, "entryUUID"])
            .output()
            .expect("ldapsearch runs");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("entryUUID: "))
            .unwrap_or_else(|| panic!("no entryUUID for {dn}"))
            .trim()
            .to_owned()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// LDIF adding a user under ou=people.
pub fn user_ldif(uid: &str, given: &str, surname: &str, mail: &[&str]) -> String {
    let mut ldif = format!(
        "dn: uid={uid},ou=people,{BASE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {given} {surname}\ngivenName: {given}\nsn: {surname}\n"
    );
    for address in mail {
        ldif.push_str(&format!("mail: {address}\n"));
    }
    ldif.push('\n');
    ldif
}

pub fn user_dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{BASE}")
}
