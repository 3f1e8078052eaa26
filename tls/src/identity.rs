//! Who a certificate names: node identities and the SANs a user mapping
//! can match.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::TlsError;

/// The URI scheme of node identities.
pub const SCHEME: &str = "cairn";

/// A cluster member as its certificate names it: the SAN URI
/// `cairn://<cluster>/node/<id>`.
///
/// `cluster` is the cluster *name* the operator (or whoever issues the
/// certificates) chose, not the id generated at bootstrap: certificates are
/// issued before the cluster exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeIdentity {
    /// The cluster name.
    pub cluster: String,
    /// The node id.
    pub node_id: u64,
}

impl NodeIdentity {
    /// The SAN URI naming this identity.
    pub fn uri(&self) -> String {
        format!("{SCHEME}://{}/node/{}", self.cluster, self.node_id)
    }

    /// Parses a SAN URI; `None` for anything that is not a node identity.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(SCHEME)?.strip_prefix("://")?;
        let (cluster, id) = rest.rsplit_once("/node/")?;
        if cluster.is_empty() || cluster.contains('/') {
            return None;
        }
        Some(Self {
            cluster: cluster.to_owned(),
            node_id: id.parse().ok()?,
        })
    }
}

impl std::fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri())
    }
}

/// What a presented certificate says about its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// SAN URIs.
    pub uris: Vec<String>,
    /// SAN DNS names.
    pub dns: Vec<String>,
    /// The subject, as text (for logs; never used to decide access).
    pub subject: String,
}

impl CertIdentity {
    /// Reads the SANs of `der`.
    ///
    /// # Errors
    /// [`TlsError::Certificate`] for a certificate that does not parse.
    pub fn from_der(der: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let mut id = CertIdentity {
            subject: cert.subject().to_string(),
            ..Self::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => id.uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => id.dns.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(id)
    }

    /// The node identity the certificate carries, if any (the first).
    pub fn node(&self) -> Option<NodeIdentity> {
        self.uris.iter().find_map(|u| NodeIdentity::parse(u))
    }

    /// A short description for errors and logs.
    pub fn describe(&self) -> String {
        match (self.node(), self.uris.first(), self.dns.first()) {
            (Some(n), _, _) => n.uri(),
            (None, Some(u), _) => format!("URI {u}"),
            (None, None, Some(d)) => format!("DNS {d}"),
            (None, None, None) => format!("subject {:?}", self.subject),
        }
    }
}

/// A certificate's validity window and serial.
pub(crate) struct Validity {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) serial: String,
}

pub(crate) fn validity(der: &CertificateDer<'_>) -> Result<Validity, TlsError> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let v = cert.validity();
    Ok(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        serial: cert.raw_serial_as_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_identities_round_trip_and_refuse_lookalikes() {
        let id = NodeIdentity {
            cluster: "prod-kv".into(),
            node_id: 7,
        };
        assert_eq!(id.uri(), "cairn://prod-kv/node/7");
        assert_eq!(NodeIdentity::parse(&id.uri()), Some(id));
        for bad in [
            "cairn://prod-kv/node/",
            "cairn://prod-kv/node/x",
            "cairn:///node/1",
            "cairn://a/b/node/1",
            "https://prod-kv/node/1",
            "cairn://prod-kv/user/1",
            "cairn://prod-kv/node/-1",
        ] {
            assert_eq!(NodeIdentity::parse(bad), None, "{bad}");
        }
    }
}
