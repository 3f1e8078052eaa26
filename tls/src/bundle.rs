//! Loading and validating TLS material from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};

use crate::error::TlsError;
use crate::identity::CertIdentity;

/// Where a process's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The trusted CA bundle: one or more PEM certificates. During a CA
    /// rotation it holds the old and the new CA.
    pub ca: PathBuf,
    /// This process's certificate chain (leaf first), PEM. Required to
    /// serve; optional for a client that authenticates otherwise.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Certificate revocation lists, PEM (any number in one file).
    pub crl: Option<PathBuf>,
}

impl TlsPaths {
    /// Every file named, for change detection.
    fn files(&self) -> impl Iterator<Item = &Path> {
        [
            Some(&self.ca),
            self.cert.as_ref(),
            self.key.as_ref(),
            self.crl.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }

    /// The bytes of every file, in a fixed order: equal bytes mean nothing
    /// changed since the last load.
    pub(crate) fn read_all(&self) -> Result<Vec<Vec<u8>>, TlsError> {
        self.files().map(read).collect()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Validated TLS material: what a reload swaps in as one piece.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The trusted CAs.
    pub roots: Arc<RootCertStore>,
    /// How many CA certificates the bundle holds.
    pub ca_count: usize,
    /// Revocation lists.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    certified: Option<Arc<CertifiedKey>>,
    /// The leaf certificate's identity (SANs), when there is one.
    pub identity: Option<CertIdentity>,
    /// The leaf's expiry, seconds since the Unix epoch.
    pub not_after: Option<i64>,
    /// The leaf's serial number, hex: tells one issued certificate from the next.
    pub serial: Option<String>,
    pub(crate) sources: Vec<Vec<u8>>,
}

impl Bundle {
    /// Reads and validates the files of `paths` as of `now`.
    ///
    /// # Errors
    /// See [`crate::TlsContext::load`].
    pub fn load(paths: &TlsPaths, now: SystemTime) -> Result<Bundle, TlsError> {
        let sources = paths.read_all()?;
        let ca_bytes = read(&paths.ca)?;
        let cas = certificates(&paths.ca, &ca_bytes)?;
        let mut roots = RootCertStore::empty();
        for ca in &cas {
            roots.add(ca.clone()).map_err(|e| TlsError::Pem {
                path: paths.ca.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let crls = match &paths.crl {
            None => Vec::new(),
            Some(p) => {
                let bytes = read(p)?;
                CertificateRevocationListDer::pem_slice_iter(&bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| TlsError::Pem {
                        path: p.clone(),
                        message: e.to_string(),
                    })?
            }
        };
        let (certified, identity, not_after, serial) = match (&paths.cert, &paths.key) {
            (None, None) => (None, None, None, None),
            (Some(_), None) | (None, Some(_)) => {
                return Err(TlsError::Invalid(
                    "a certificate needs its key and a key its certificate: give both or neither"
                        .into(),
                ));
            }
            (Some(cert_path), Some(key_path)) => {
                let chain = certificates(cert_path, &read(cert_path)?)?;
                let key_bytes = read(key_path)?;
                let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::Pem {
                    path: key_path.clone(),
                    message: format!("no private key: {e}"),
                })?;
                let leaf = chain[0].clone();
                let validity = crate::identity::validity(&leaf)?;
                let unix_now = unix(now);
                if unix_now < validity.not_before {
                    return Err(TlsError::NotYetValid {
                        path: cert_path.clone(),
                        not_before: validity.not_before,
                    });
                }
                if unix_now > validity.not_after {
                    return Err(TlsError::Expired {
                        path: cert_path.clone(),
                        not_after: validity.not_after,
                    });
                }
                verify_chain(&chain, &cas, now).map_err(|e| TlsError::Chain {
                    path: cert_path.clone(),
                    ca: paths.ca.clone(),
                    message: e,
                })?;
                let certified =
                    CertifiedKey::from_der(chain, key, &crate::provider()).map_err(|e| {
                        TlsError::KeyMismatch {
                            cert: cert_path.clone(),
                            key: key_path.clone(),
                            message: e.to_string(),
                        }
                    })?;
                (
                    Some(Arc::new(certified)),
                    Some(CertIdentity::from_der(&leaf)?),
                    Some(validity.not_after),
                    Some(validity.serial),
                )
            }
        };
        Ok(Bundle {
            roots: Arc::new(roots),
            ca_count: cas.len(),
            crls,
            certified,
            identity,
            not_after,
            serial,
            sources,
        })
    }

    /// The certificate chain and signing key, when the bundle has one.
    pub(crate) fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.certified.clone()
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The chain leads from the leaf to one of `cas`, as a peer would check it.
fn verify_chain(
    chain: &[CertificateDer<'static>],
    cas: &[CertificateDer<'static>],
    now: SystemTime,
) -> Result<(), String> {
    let anchors = cas
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA bundle: {e}"))?;
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| format!("leaf: {e}"))?;
    let algs = crate::provider().signature_verification_algorithms.all;
    let time = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    // Server use is what every certificate with a key here is for (nodes
    // serve; a client-only certificate is checked as a client below).
    leaf.verify_for_usage(
        algs,
        &anchors,
        &chain[1..],
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
    .or_else(|_| {
        leaf.verify_for_usage(
            algs,
            &anchors,
            &chain[1..],
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
    })
    .map_err(|e| format!("does not chain to the CA bundle: {e}"))
}
