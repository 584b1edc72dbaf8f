//! SSNTP certificates: role and identity extraction, and (with the `issue` feature) generation
//! in ciao's shape or a modern one.
//!
//! SSNTP carries a peer's role in its certificate: private OIDs under Intel's enterprise number
//! (1.3.6.1.4.1.343.8.N) inside the ExtendedKeyUsage extension (reference/ssntp.md §1.1).
//! [`Shape::Ciao`] reproduces what `ciao-cert` writes so that Go peers accept our certificates
//! unchanged; [`Shape::Modern`] is a conventional CA + leaf layout that ordinary TLS stacks accept.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::frame::role;

/// Errors from generating or reading certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[cfg(feature = "issue")]
    #[error("generating RSA key: {0}")]
    Rsa(#[from] rsa::Error),
    #[cfg(feature = "issue")]
    #[error("encoding private key: {0}")]
    KeyEncoding(String),
    #[cfg(feature = "issue")]
    #[error("building certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("parsing certificate: {0}")]
    Parse(String),
    #[error("no {0} block in PEM input")]
    MissingPem(&'static str),
    #[error("private key does not match the certificate")]
    KeyMismatch,
    #[error("issued certificate's issuer does not match the anchor's subject")]
    IssuerMismatch,
    #[error("validity period ends before it starts")]
    BadValidity,
}

/// Role bit → OID arc (the N in 1.3.6.1.4.1.343.8.N), from ciao's `ssntp.go`.
pub const ROLE_OIDS: [(u32, u64); 6] = [
    (role::SERVER, 5),
    (role::CONTROLLER, 3),
    (role::AGENT, 1),
    (role::SCHEDULER, 2),
    (role::NETAGENT, 4),
    (role::CNCIAGENT, 6),
];

/// OID prefix of the SSNTP role OIDs.
pub(crate) const ROLE_OID_PREFIX: [u64; 8] = [1, 3, 6, 1, 4, 1, 343, 8];

/// The dotted OID for a single role bit, e.g. `1.3.6.1.4.1.343.8.6` for CNCIAGENT.
pub fn role_oid(bit: u32) -> Option<String> {
    ROLE_OIDS
        .iter()
        .find(|(b, _)| *b == bit)
        .map(|(_, arc)| format!("1.3.6.1.4.1.343.8.{arc}"))
}

/// Role bits carried by a parsed certificate's EKU extension (0 if it has none).
pub(crate) fn roles_of_parsed(cert: &X509Certificate<'_>) -> Result<u32, CertError> {
    let eku = match cert.extended_key_usage() {
        Ok(Some(eku)) => eku.value,
        Ok(None) => return Ok(0),
        Err(e) => return Err(CertError::Parse(e.to_string())),
    };
    let mut roles = 0;
    for oid in &eku.other {
        let Some(arcs) = oid.iter() else { continue };
        let arcs: Vec<u64> = arcs.collect();
        if arcs.len() == ROLE_OID_PREFIX.len() + 1 && arcs[..8] == ROLE_OID_PREFIX {
            if let Some((bit, _)) = ROLE_OIDS.iter().find(|(_, a)| *a == arcs[8]) {
                roles |= bit;
            }
        }
    }
    Ok(roles)
}

/// The SSNTP role bitmask of a DER certificate: the OR of the role OIDs in its EKU extension,
/// which is how Go's `verifyRole` reads it.
pub fn roles_of(cert_der: &[u8]) -> Result<u32, CertError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| CertError::Parse(e.to_string()))?;
    roles_of_parsed(&cert)
}

/// The prefix of a URI SAN naming a node UUID (RFC 4122 §3).
pub(crate) const URN_UUID: &str = "urn:uuid:";

/// What a verified peer certificate says about who may use it: the basis of the scheduler's
/// decisions about a session (which role, which UUIDs, may it replace another session).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Role bits (the OR of its role OIDs).
    pub roles: u32,
    /// Node UUIDs it names (`urn:uuid:` URI SANs); empty for ciao-shaped certificates.
    pub uuids: Vec<uuid::Uuid>,
    /// Its SubjectPublicKeyInfo (DER): two sessions presenting the same key are the same
    /// holder, even across a certificate renewal. Empty if unknown, which matches nothing.
    pub public_key: Vec<u8>,
}

impl PeerIdentity {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
        Self::from_parsed(&cert)
    }

    pub(crate) fn from_parsed(cert: &X509Certificate<'_>) -> Result<Self, CertError> {
        Ok(PeerIdentity {
            roles: roles_of_parsed(cert)?,
            uuids: uuids_of_parsed(cert)?,
            public_key: cert.public_key().raw.to_vec(),
        })
    }

    /// True if both come from the same key pair (and the key is known).
    pub fn same_key(&self, other: &PeerIdentity) -> bool {
        !self.public_key.is_empty() && self.public_key == other.public_key
    }

    /// True if the certificate names `uuid`.
    pub fn names(&self, uuid: &uuid::Uuid) -> bool {
        self.uuids.contains(uuid)
    }
}

/// The node UUIDs a certificate names as `urn:uuid:` URI SANs. A malformed one is an error
/// rather than ignored: it would silently turn a bound certificate into an unbound one.
fn uuids_of_parsed(cert: &X509Certificate<'_>) -> Result<Vec<uuid::Uuid>, CertError> {
    use x509_parser::prelude::GeneralName;
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Parse(e.to_string()))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            let Some(text) = uri
                .get(..URN_UUID.len())
                .filter(|p| p.eq_ignore_ascii_case(URN_UUID))
                .map(|_| &uri[URN_UUID.len()..])
            else {
                continue;
            };
            let u = uuid::Uuid::parse_str(text)
                .map_err(|e| CertError::Parse(format!("URI SAN {uri:?}: {e}")))?;
            out.push(u);
        }
    }
    Ok(out)
}

mod files;
pub use files::{write_pem, Secrecy};

#[cfg(feature = "issue")]
mod issue;
#[cfg(feature = "issue")]
pub use issue::*;
