//! Mutual TLS for SSNTP with verifiers that accept ciao-shaped certificates.
//!
//! webpki cannot verify ciao's certificates (reference/ssntp.md §1.1): their EKU is
//! anyExtendedKeyUsage plus private role OIDs, the scheduler's server certificate is the CA
//! itself, and leaves have Subject == Issuer without key identifiers. The verifiers here accept
//! that shape while still checking what matters: the peer certificate is the configured CA or
//! is signed by it, both are inside their validity window, the EKU (if present) allows the
//! TLS purpose, optionally the server's SAN, and the handshake signature.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    ServerConfig, SignatureScheme,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::certs;

/// Errors from building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("no CERTIFICATE block in PEM input")]
    NoCertificate,
    #[error("CA certificate is invalid: {0}")]
    BadCa(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The crypto provider SSNTP uses: ring, with TLS 1.2 and 1.3 and ECDHE + AES-GCM/ChaCha suites,
/// covering what Go 1.8 (TLS 1.2 ECDHE-RSA-AES-GCM) and later Go (TLS 1.3) negotiate.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads ciao's single-file format (`CERTIFICATE` then `RSA PRIVATE KEY`); PKCS#8 and
    /// SEC1 keys are accepted too.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::from_pem_parts(pem, pem)
    }

    /// Reads the certificate chain and the key from separate PEM texts.
    pub fn from_pem_parts(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)?;
        Ok(Identity { chain, key })
    }
}

/// Reads the first certificate of a PEM text (a ciao CA file holds exactly one).
pub fn ca_from_pem(pem: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or(TlsError::NoCertificate)?
        .map_err(TlsError::from)
}

/// The role bits of the peer's certificate after the handshake (0 if none or unparsable);
/// the basis of SSNTP's CONNECT/CONNECTED role checks.
pub fn peer_roles(state: &CommonState) -> u32 {
    state
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| certs::roles_of(c).ok())
        .unwrap_or(0)
}

/// What the peer's verified leaf certificate says about it (roles, bound UUIDs, key); empty
/// (no roles, matching nothing) if there is none or it cannot be read.
pub fn peer_identity(state: &CommonState) -> certs::PeerIdentity {
    state
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| certs::PeerIdentity::from_der(c).ok())
        .unwrap_or_default()
}

/// Client-side options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Check the server certificate's SAN against the dialled name (IP SAN for an IP, DNS SAN
    /// for a name), as Go clients do. On by default.
    pub verify_server_name: bool,
    /// Role bits the server certificate must carry (e.g. SCHEDULER); 0 checks nothing here and
    /// leaves it to the protocol layer.
    pub required_server_roles: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            verify_server_name: true,
            required_server_roles: 0,
        }
    }
}

/// Server-side options.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Role bits every client certificate must carry; 0 leaves the check to CONNECT handling.
    pub required_client_roles: u32,
}

/// Which TLS purpose the peer certificate is checked for.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Server,
    Client,
}

/// Checks a peer certificate against one trusted CA certificate, the way Go's crypto/x509
/// would for a chain of length 1 or 2, but without webpki's end-entity/EKU restrictions.
#[derive(Debug)]
struct CaVerifier {
    ca_der: Vec<u8>,
    ca_subject: DistinguishedName,
    algs: WebPkiSupportedAlgorithms,
    required_roles: u32,
}

fn bad(e: CertificateError) -> rustls::Error {
    rustls::Error::InvalidCertificate(e)
}

fn check_validity(cert: &X509Certificate<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(bad(CertificateError::NotValidYet));
    }
    if now > validity.not_after.timestamp() {
        return Err(bad(CertificateError::Expired));
    }
    Ok(())
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, rustls::Error> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|_| bad(CertificateError::BadEncoding))
}

impl CaVerifier {
    fn new(ca: &CertificateDer<'_>, required_roles: u32) -> Result<Self, TlsError> {
        let parsed = X509Certificate::from_der(ca)
            .map_err(|e| TlsError::BadCa(e.to_string()))?
            .1;
        let ca_subject = DistinguishedName::from(parsed.subject().as_raw().to_vec());
        Ok(CaVerifier {
            ca_der: ca.to_vec(),
            ca_subject,
            algs: provider().signature_verification_algorithms,
            required_roles,
        })
    }

    fn verify<'a>(
        &self,
        end_entity: &'a CertificateDer<'_>,
        purpose: Purpose,
        now: UnixTime,
    ) -> Result<X509Certificate<'a>, rustls::Error> {
        let cert = parse(end_entity)?;
        check_validity(&cert, now)?;
        if end_entity.as_ref() != self.ca_der.as_slice() {
            // Go's chain building: the CA must be a CA allowed to sign certificates, and its
            // key must have signed the peer certificate.
            let ca = parse(&self.ca_der)?;
            check_validity(&ca, now)?;
            if !ca.is_ca() {
                return Err(bad(CertificateError::UnknownIssuer));
            }
            if let Ok(Some(ku)) = ca.key_usage() {
                if !ku.value.key_cert_sign() {
                    return Err(bad(CertificateError::UnknownIssuer));
                }
            }
            if cert.issuer().as_raw() != ca.subject().as_raw() {
                return Err(bad(CertificateError::UnknownIssuer));
            }
            cert.verify_signature(Some(ca.public_key()))
                .map_err(|_| bad(CertificateError::BadSignature))?;
        }
        // Go treats anyExtendedKeyUsage (and a missing EKU) as good for any purpose.
        match cert.extended_key_usage() {
            Ok(None) => {}
            Ok(Some(eku)) => {
                let e = eku.value;
                let ok = e.any
                    || match purpose {
                        Purpose::Server => e.server_auth,
                        Purpose::Client => e.client_auth,
                    };
                if !ok {
                    return Err(bad(CertificateError::InvalidPurpose));
                }
            }
            Err(_) => return Err(bad(CertificateError::BadEncoding)),
        }
        // A certificate whose identity cannot be read (e.g. a malformed urn:uuid SAN) is refused
        // here rather than treated later as one that names no UUID.
        certs::PeerIdentity::from_parsed(&cert).map_err(|_| bad(CertificateError::BadEncoding))?;
        if self.required_roles != 0 {
            let roles =
                certs::roles_of_parsed(&cert).map_err(|_| bad(CertificateError::BadEncoding))?;
            if roles & self.required_roles != self.required_roles {
                return Err(bad(CertificateError::ApplicationVerificationFailure));
            }
        }
        Ok(cert)
    }
}

fn check_server_name(
    cert: &X509Certificate<'_>,
    name: &ServerName<'_>,
) -> Result<(), rustls::Error> {
    let san = match cert.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.clone(),
        Ok(None) => Vec::new(),
        Err(_) => return Err(bad(CertificateError::BadEncoding)),
    };
    let ok = match name {
        ServerName::IpAddress(ip) => {
            let ip = IpAddr::from(*ip);
            san.iter().any(|g| match (g, ip) {
                (GeneralName::IPAddress(b), IpAddr::V4(v4)) => *b == v4.octets(),
                (GeneralName::IPAddress(b), IpAddr::V6(v6)) => *b == v6.octets(),
                _ => false,
            })
        }
        ServerName::DnsName(dns) => {
            let want = dns.as_ref().trim_end_matches('.').to_ascii_lowercase();
            san.iter().any(|g| match g {
                GeneralName::DNSName(have) => dns_matches(&have.to_ascii_lowercase(), &want),
                _ => false,
            })
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad(CertificateError::NotValidForName))
    }
}

/// DNS SAN matching with Go's rule for wildcards: `*.` replaces exactly the leftmost label.
fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if let Some(suffix) = pattern.strip_prefix("*.") {
        match host.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest == suffix,
            None => false,
        }
    } else {
        pattern == host
    }
}

/// Client side: verifies the SSNTP server (scheduler) certificate.
#[derive(Debug)]
pub struct SsntpServerVerifier {
    inner: CaVerifier,
    verify_name: bool,
}

impl SsntpServerVerifier {
    pub fn new(ca: &CertificateDer<'_>, opts: &ClientOptions) -> Result<Self, TlsError> {
        Ok(SsntpServerVerifier {
            inner: CaVerifier::new(ca, opts.required_server_roles)?,
            verify_name: opts.verify_server_name,
        })
    }
}

impl ServerCertVerifier for SsntpServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = self.inner.verify(end_entity, Purpose::Server, now)?;
        if self.verify_name {
            check_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.inner.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.inner.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algs.supported_schemes()
    }
}

/// Server side: requires and verifies the client certificate, like Go's
/// `RequireAndVerifyClientCert` with `ClientCAs` = the CA file.
#[derive(Debug)]
pub struct SsntpClientVerifier {
    inner: CaVerifier,
    hints: Vec<DistinguishedName>,
}

impl SsntpClientVerifier {
    pub fn new(ca: &CertificateDer<'_>, opts: &ServerOptions) -> Result<Self, TlsError> {
        let inner = CaVerifier::new(ca, opts.required_client_roles)?;
        // Go clients only send a certificate whose issuer is in certificate_authorities.
        let hints = vec![inner.ca_subject.clone()];
        Ok(SsntpClientVerifier { inner, hints })
    }
}

impl ClientCertVerifier for SsntpClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner.verify(end_entity, Purpose::Client, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.inner.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.inner.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algs.supported_schemes()
    }
}

/// A server configuration that requires client certificates from `ca`.
pub fn server_config(
    ca: &CertificateDer<'_>,
    identity: Identity,
    opts: &ServerOptions,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = Arc::new(SsntpClientVerifier::new(ca, opts)?);
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)?;
    Ok(Arc::new(config))
}

/// A client configuration presenting `identity` and trusting servers certified by `ca`.
pub fn client_config(
    ca: &CertificateDer<'_>,
    identity: Identity,
    opts: &ClientOptions,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = Arc::new(SsntpServerVerifier::new(ca, opts)?);
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain, identity.key)?;
    Ok(Arc::new(config))
}

/// A client configuration from the files `ciao-cert` writes: `cert` holds the certificate and
/// its key, `ca` the CA certificate. Daemons that dial the scheduler all start this way.
pub fn client_config_from_files(
    cert: &std::path::Path,
    ca: &std::path::Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let identity = Identity::from_pem(&read(cert)?)?;
    let ca = ca_from_pem(&read(ca)?)?;
    client_config(&ca, identity, &ClientOptions::default())
}

#[cfg(test)]
mod tests {
    use super::dns_matches;

    #[test]
    fn wildcards() {
        assert!(dns_matches("*.example.com", "a.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(dns_matches("host.", "host"));
    }
}
