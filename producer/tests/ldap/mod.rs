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
    /// The ldaps:// port, when slapd was started with TLS.
    pub tls_port: Option<u16>,
    /// The CA file the tools trust, when slapd was started with TLS (they then use StartTLS).
    ca_file: Option<PathBuf>,
    child: Option<Child>,
}

/// A test CA and the server certificate it signed for 127.0.0.1, as PEM files.
#[derive(Debug)]
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl TestPki {
    /// A fresh CA ("moss test CA <name>") and a server certificate for 127.0.0.1 and localhost.
    pub fn new(name: &str) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("moss test CA {name}"));
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let mut server_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        server_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Slapd {
    /// Starts slapd on a free port with an empty database and the base entries.
    pub fn start() -> Slapd {
        Slapd::start_with(None)
    }

    /// Starts slapd with TLS: the server certificate of `pki`, an ldaps:// listener beside the
    /// ldap:// one, and simple binds refused without TLS (so a watcher that binds at all used
    /// TLS). The tools then bind over StartTLS, trusting `pki`'s CA.
    pub fn start_tls(pki: &TestPki) -> Slapd {
        Slapd::start_with(Some(pki))
    }

    fn start_with(pki: Option<&TestPki>) -> Slapd {
        assert!(
            Path::new(SLAPD).exists(),
            "slapd is missing: install Debian's slapd and ldap-utils packages"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let mut config = include_str!("slapd.conf").replace("@DIR@", dir.path().to_str().unwrap());
        let mut ca_file = None;
        if let Some(pki) = pki {
            let ca = dir.path().join("ca.pem");
            std::fs::write(&ca, &pki.ca_pem).unwrap();
            std::fs::write(dir.path().join("server.pem"), &pki.server_cert_pem).unwrap();
            std::fs::write(dir.path().join("server.key"), &pki.server_key_pem).unwrap();
            // Global TLS settings go before the first database.
            let tls = format!(
                "TLSCACertificateFile {dir}/ca.pem\nTLSCertificateFile {dir}/server.pem\nTLSCertificateKeyFile {dir}/server.key\nsecurity simple_bind=64\n",
                dir = dir.path().display()
            );
            config = config.replacen("database mdb", &format!("{tls}\ndatabase mdb"), 1);
            ca_file = Some(ca);
        }
        std::fs::write(dir.path().join("slapd.conf"), config).unwrap();
        let mut slapd = Slapd {
            dir,
            port: free_port(),
            tls_port: pki.map(|_| free_port()),
            ca_file,
            child: None,
        };
        slapd.resume();
        slapd.apply("ldapadd", include_str!("base.ldif"));
        slapd
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    /// The ldaps:// URL of a slapd started with TLS.
    pub fn ldaps_url(&self) -> String {
        format!(
            "ldaps://127.0.0.1:{}/",
            self.tls_port.expect("slapd started with TLS")
        )
    }

    /// Where the test CA is, for a slapd started with TLS.
    pub fn ca_file(&self) -> &Path {
        self.ca_file.as_deref().expect("slapd started with TLS")
    }

    /// The ldap command-line tools' arguments to reach this slapd as the administrator.
    fn tool_command(&self, tool: &str) -> Command {
        let mut command = Command::new(tool);
        command.args(["-x", "-H", &self.url()]);
        if let Some(ca) = &self.ca_file {
            command.arg("-ZZ").env("LDAPTLS_CACERT", ca);
        }
        command.args(["-D", ADMIN_DN, "-w", ADMIN_PASSWORD]);
        command
    }

    /// Starts (again) on the same port and database.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "slapd is already running");
        let config: PathBuf = self.dir.path().join("slapd.conf");
        let until = Instant::now() + Duration::from_secs(15);
        let listeners = match self.tls_port {
            Some(tls_port) => format!("{} ldaps://127.0.0.1:{tls_port}/", self.url()),
            None => self.url(),
        };
        loop {
            let child = Command::new(SLAPD)
                .arg("-f")
                .arg(&config)
                .arg("-h")
                .arg(&listeners)
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
        let mut child = self
            .tool_command(tool)
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
        let output = self
            .tool_command("ldapsearch")
            .arg("-LLL")
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
