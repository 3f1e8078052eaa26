//! A small certificate authority: issues node and client certificates and
//! CRLs as PEM. For the playground, the operator's `mode: operator` and
//! tests; a production cluster may use any CA (cert-manager, Vault, its own).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::TlsPaths;
use crate::identity::NodeIdentity;

/// Why a certificate could not be issued or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// rcgen refused the parameters.
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// Writing a PEM file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A CA: its key, certificate and the serials it has used.
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
    next_serial: AtomicU64,
}

/// What to put in an issued certificate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// Subject common name (informational).
    pub common_name: String,
    /// SAN URIs (a node's identity goes here).
    pub uris: Vec<String>,
    /// SAN DNS names.
    pub dns: Vec<String>,
    /// SAN IP addresses.
    pub ips: Vec<IpAddr>,
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until.
    pub not_after: SystemTime,
    /// Usable as a server certificate.
    pub server: bool,
    /// Usable as a client certificate.
    pub client: bool,
}

impl CertRequest {
    /// A node certificate: its identity URI, usable to serve and to dial
    /// peers, for the given host names and addresses, valid for `days`.
    pub fn node(identity: &NodeIdentity, hosts: &[String], days: u64) -> Self {
        let (ips, dns): (Vec<_>, Vec<_>) = hosts.iter().partition(|h| h.parse::<IpAddr>().is_ok());
        let now = SystemTime::now();
        Self {
            common_name: format!("node {} of {}", identity.node_id, identity.cluster),
            uris: vec![identity.uri()],
            dns: dns.into_iter().cloned().collect(),
            ips: ips.iter().filter_map(|h| h.parse().ok()).collect(),
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(days * 86_400),
            server: true,
            client: true,
        }
    }

    /// A client certificate naming `uri` (mapped to a user explicitly),
    /// valid for `days`.
    pub fn client(common_name: &str, uri: Option<&str>, days: u64) -> Self {
        let now = SystemTime::now();
        Self {
            common_name: common_name.to_owned(),
            uris: uri.map(str::to_owned).into_iter().collect(),
            dns: Vec::new(),
            ips: Vec::new(),
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(days * 86_400),
            server: false,
            client: true,
        }
    }
}

/// An issued certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// Its serial number.
    pub serial: u64,
}

fn at(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

impl Authority {
    /// A new self-signed CA named `name`, valid for ten years.
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn new(name: &str) -> Result<Self, AuthorityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = at(now - Duration::from_secs(3600));
        params.not_after = at(now + Duration::from_secs(3650 * 86_400));
        params.key_identifier_method = KeyIdMethod::Sha256;
        let seed = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 & 0x0fff_ffff_ffff_ffff);
        params.serial_number = Some(SerialNumber::from(seed));
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Self {
            params,
            key,
            cert_pem,
            next_serial: AtomicU64::new(seed.wrapping_add(1)),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for `req` with a new key.
    ///
    /// # Errors
    /// Parameters rcgen refuses (e.g. a URI that is not ASCII).
    pub fn issue(&self, req: &CertRequest) -> Result<Issued, AuthorityError> {
        let key = KeyPair::generate()?;
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.common_name.as_str());
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = at(req.not_before);
        params.not_after = at(req.not_after);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if req.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if req.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        for u in &req.uris {
            params
                .subject_alt_names
                .push(SanType::URI(u.as_str().try_into()?));
        }
        for d in &req.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.as_str().try_into()?));
        }
        for ip in &req.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        })
    }

    /// A CRL revoking `serials`, valid for a week.
    ///
    /// # Errors
    /// Signing failed.
    pub fn crl(&self, serials: &[u64]) -> Result<String, AuthorityError> {
        let now = SystemTime::now();
        let params = CertificateRevocationListParams {
            this_update: at(now - Duration::from_secs(60)),
            next_update: at(now + Duration::from_secs(7 * 86_400)),
            crl_number: SerialNumber::from(
                now.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs()),
            ),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: at(now - Duration::from_secs(60)),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        Ok(params.signed_by(&issuer)?.pem()?)
    }

    /// Writes the CA certificate to `dir/ca.pem` and `issued` to
    /// `dir/<name>.pem` and `dir/<name>.key` (mode 0600), returning the paths.
    ///
    /// # Errors
    /// A file that could not be written.
    pub fn write(
        &self,
        dir: &Path,
        name: &str,
        issued: &Issued,
    ) -> Result<TlsPaths, AuthorityError> {
        let ca = dir.join("ca.pem");
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        write_file(&ca, self.ca_pem().as_bytes(), 0o644)?;
        write_file(&cert, issued.cert_pem.as_bytes(), 0o644)?;
        write_file(&key, issued.key_pem.as_bytes(), 0o600)?;
        Ok(TlsPaths {
            ca,
            cert: Some(cert),
            key: Some(key),
            crl: None,
        })
    }
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it),
/// with Unix permissions `mode`.
///
/// # Errors
/// The directory is not writable.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuthorityError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| AuthorityError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
