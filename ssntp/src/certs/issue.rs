//! Certificate issuance (the `issue` feature): only the certificate tool and tests that make
//! certificates need it, so daemons do not compile RSA key generation and rcgen in.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::rand_core::{OsRng, RngCore};

use x509_parser::prelude::{FromDer, X509Certificate};

use super::{CertError, ROLE_OIDS, ROLE_OID_PREFIX, URN_UUID};
use crate::frame::role;

fn role_ekus(roles: u32) -> Vec<ExtendedKeyUsagePurpose> {
    ROLE_OIDS
        .iter()
        .filter(|(bit, _)| roles & bit != 0)
        .map(|(_, arc)| {
            let mut oid = ROLE_OID_PREFIX.to_vec();
            oid.push(*arc);
            ExtendedKeyUsagePurpose::Other(oid)
        })
        .collect()
}

/// Which certificate layout to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Exactly what `ciao-cert` makes: RSA-2048/SHA256, EKU = anyExtendedKeyUsage + role OIDs,
    /// Subject only `O=<org>`, the anchor is the scheduler's own (CA:TRUE) certificate, leaves
    /// carry no key identifiers. Needs [`crate::tls`]'s custom verifiers on the Rust side.
    Ciao,
    /// A dedicated CA and ECDSA P-256 leaves with serverAuth/clientAuth EKU plus role OIDs and
    /// key identifiers; acceptable to stock TLS verifiers.
    Modern,
}

/// Validity period of issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From now for `days` days (ciao-cert uses 365).
    pub fn days(days: u64) -> Self {
        let now = SystemTime::now();
        Validity {
            not_before: now,
            not_after: now + Duration::from_secs(days * 86_400),
        }
    }

    /// An explicit window; used e.g. to make already-expired certificates for tests.
    pub fn between(not_before: SystemTime, not_after: SystemTime) -> Result<Self, CertError> {
        if not_after <= not_before {
            return Err(CertError::BadValidity);
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }
}

impl Default for Validity {
    fn default() -> Self {
        Validity::days(365)
    }
}

/// Subject alternative names of a certificate (ciao-cert's `-host`, `-ip` and `-email`, and
/// this project's node UUIDs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub hosts: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub email: Option<String>,
    /// SSNTP UUIDs the holder may connect as, written as `urn:uuid:<uuid>` URI SANs: a
    /// scheduler refuses a CONNECT from this certificate whose Source is not one of them.
    pub uuids: Vec<uuid::Uuid>,
}

impl Names {
    pub fn new(hosts: &[&str], ips: &[IpAddr]) -> Self {
        Names {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ips: ips.to_vec(),
            email: None,
            uuids: Vec::new(),
        }
    }

    /// Binds the certificate to these node UUIDs (`urn:uuid:` SANs).
    pub fn with_uuids(mut self, uuids: &[uuid::Uuid]) -> Self {
        self.uuids = uuids.to_vec();
        self
    }

    fn sans(&self) -> Result<Vec<SanType>, CertError> {
        // Go's order: DNS names, e-mail addresses, IP addresses.
        let mut sans = Vec::new();
        for h in &self.hosts {
            sans.push(SanType::DnsName(h.clone().try_into()?));
        }
        if let Some(email) = &self.email {
            sans.push(SanType::Rfc822Name(email.clone().try_into()?));
        }
        for ip in &self.ips {
            sans.push(SanType::IpAddress(*ip));
        }
        for u in &self.uuids {
            sans.push(SanType::URI(format!("{URN_UUID}{u}").try_into()?));
        }
        Ok(sans)
    }
}

/// A generated certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The `CERTIFICATE` block.
    pub cert_pem: String,
    /// The private key: `RSA PRIVATE KEY` (PKCS#1) for [`Shape::Ciao`] as ciao writes it,
    /// `PRIVATE KEY` (PKCS#8) for [`Shape::Modern`].
    pub key_pem: String,
    /// The certificate DER.
    pub cert_der: Vec<u8>,
}

impl Issued {
    /// The single file ciao loads with `tls.X509KeyPair(pem, pem)`: certificate then key.
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// A freshly generated key pair, usable by rcgen, plus its PEM encoding in the shape's format.
struct GeneratedKey {
    key: KeyPair,
    pem: String,
}

fn generate_key(shape: Shape) -> Result<GeneratedKey, CertError> {
    match shape {
        Shape::Ciao => {
            // ring cannot generate RSA keys, so the pure-Rust `rsa` crate does it.
            let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048)?;
            let pkcs8 = key
                .to_pkcs8_der()
                .map_err(|e| CertError::KeyEncoding(e.to_string()))?;
            let pem = key
                .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| CertError::KeyEncoding(e.to_string()))?
                .to_string();
            let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes());
            let key = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256)?;
            Ok(GeneratedKey { key, pem })
        }
        Shape::Modern => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let pem = key.serialize_pem();
            Ok(GeneratedKey { key, pem })
        }
    }
}

/// A random positive 128-bit serial, as Go's ciao-cert uses.
fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01; // keep it 16 bytes long and positive
    SerialNumber::from_slice(&b)
}

fn base_params(
    org: &str,
    validity: Validity,
    names: &Names,
) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
    params.serial_number = Some(random_serial());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    params.subject_alt_names = names.sans()?;
    Ok(params)
}

/// BasicConstraints with cA absent (FALSE), critical, as Go writes it for leaves; added by hand
/// because rcgen's `ExplicitNoCa` would also add a SubjectKeyIdentifier, which ciao leaves lack.
fn basic_constraints_not_ca() -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
    ext.set_criticality(true);
    ext
}

fn pem_of(der: &[u8]) -> Result<String, CertError> {
    rsa::pkcs8::der::pem::encode_string("CERTIFICATE", rsa::pkcs8::LineEnding::LF, der)
        .map_err(|e| CertError::KeyEncoding(e.to_string()))
}

/// A certificate authority for an SSNTP deployment.
pub struct Authority {
    shape: Shape,
    org: String,
    issuer: Issuer<'static, KeyPair>,
    anchor: Issued,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("shape", &self.shape)
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Creates the anchor. For [`Shape::Ciao`] the anchor is the scheduler's certificate
    /// (`ciao-cert -anchor -role scheduler`), so `names` should be the scheduler's host names
    /// and addresses: Go clients dial those SANs and verify them. For [`Shape::Modern`] it is a
    /// plain CA and `names` is usually empty.
    pub fn new(
        shape: Shape,
        org: &str,
        validity: Validity,
        names: &Names,
    ) -> Result<Self, CertError> {
        let key = generate_key(shape)?;
        let mut params = base_params(org, validity, names)?;
        match shape {
            Shape::Ciao => {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                    KeyUsagePurpose::KeyCertSign,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
                params
                    .extended_key_usages
                    .extend(role_ekus(role::SCHEDULER));
            }
            Shape::Modern => {
                params
                    .distinguished_name
                    .push(DnType::CommonName, format!("{org} SSNTP CA"));
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
            }
        }
        let cert = params.self_signed(&key.key)?;
        let anchor = Issued {
            cert_pem: cert.pem(),
            key_pem: key.pem,
            cert_der: cert.der().to_vec(),
        };
        Ok(Authority {
            shape,
            org: org.to_string(),
            issuer: Issuer::new(params, key.key),
            anchor,
        })
    }

    /// Loads an existing anchor (e.g. ciao's `cert-Scheduler-<host>.pem` as both arguments, or
    /// a CA certificate and its key) so that more roles can be issued for a running deployment.
    /// Keys may be PKCS#1 (`RSA PRIVATE KEY`, as ciao writes them) or PKCS#8.
    pub fn from_pem(shape: Shape, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| CertError::MissingPem("CERTIFICATE"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| CertError::MissingPem("PRIVATE KEY"))?;
        let pkcs8: Vec<u8> = match &key {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            PrivateKeyDer::Pkcs1(k) => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                rsa::RsaPrivateKey::from_pkcs1_der(k.secret_pkcs1_der())
                    .map_err(|e| CertError::KeyEncoding(e.to_string()))?
                    .to_pkcs8_der()
                    .map_err(|e| CertError::KeyEncoding(e.to_string()))?
                    .as_bytes()
                    .to_vec()
            }
            _ => return Err(CertError::KeyEncoding("unsupported key format".into())),
        };
        let key = KeyPair::try_from(&PrivatePkcs8KeyDer::from(pkcs8.as_slice()))?;
        let (_, parsed) =
            X509Certificate::from_der(&der).map_err(|e| CertError::Parse(e.to_string()))?;
        if !parsed.is_ca() {
            return Err(CertError::Parse("anchor is not a CA certificate".into()));
        }
        if parsed.public_key().subject_public_key.data.as_ref()
            != rcgen::PublicKeyData::der_bytes(&key)
        {
            return Err(CertError::KeyMismatch);
        }
        let org = parsed
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .unwrap_or("")
            .to_string();
        let anchor = Issued {
            cert_pem: pem_of(&der)?,
            key_pem: key_pem.to_string(),
            cert_der: der.to_vec(),
        };
        Ok(Authority {
            shape,
            org,
            issuer: Issuer::from_ca_cert_der(&der, key)?,
            anchor,
        })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The CA file's content: the anchor certificate only (ciao's `CAcert-<host>.pem`).
    pub fn cert_pem(&self) -> &str {
        &self.anchor.cert_pem
    }

    /// The anchor certificate and its key. For [`Shape::Ciao`] this is the scheduler's
    /// certificate (`cert-Scheduler-<host>.pem` is its [`Issued::combined_pem`]).
    pub fn anchor(&self) -> &Issued {
        &self.anchor
    }

    /// Issues a leaf for `roles` (a bitmask of [`crate::frame::role`]) valid for a year.
    pub fn issue(&self, roles: u32, names: &Names) -> Result<Issued, CertError> {
        self.issue_with_validity(roles, names, Validity::default())
    }

    /// Issues a leaf with an explicit validity window.
    pub fn issue_with_validity(
        &self,
        roles: u32,
        names: &Names,
        validity: Validity,
    ) -> Result<Issued, CertError> {
        let key = generate_key(self.shape)?;
        let mut params = base_params(&self.org, validity, names)?;
        match self.shape {
            Shape::Ciao => {
                params.is_ca = IsCa::NoCa;
                params.custom_extensions.push(basic_constraints_not_ca());
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
                // Subject == issuer, so Go writes no AKI either.
                params.use_authority_key_identifier_extension = false;
            }
            Shape::Modern => {
                let cn = names
                    .hosts
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("ssntp role 0x{roles:02x}"));
                params.distinguished_name.push(DnType::CommonName, cn);
                params.is_ca = IsCa::ExplicitNoCa;
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                params.use_authority_key_identifier_extension = true;
            }
        }
        params.extended_key_usages.extend(role_ekus(roles));
        let cert = params.signed_by(&key.key, &self.issuer)?;
        // rcgen re-encodes the issuer name; a byte difference would break chain building.
        let (_, leaf) =
            X509Certificate::from_der(cert.der()).map_err(|e| CertError::Parse(e.to_string()))?;
        let (_, ca) = X509Certificate::from_der(&self.anchor.cert_der)
            .map_err(|e| CertError::Parse(e.to_string()))?;
        if leaf.issuer().as_raw() != ca.subject().as_raw() {
            return Err(CertError::IssuerMismatch);
        }
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.pem,
            cert_der: cert.der().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{role_oid, roles_of, PeerIdentity};

    #[test]
    fn role_oid_strings() {
        assert_eq!(
            role_oid(role::CNCIAGENT).as_deref(),
            Some("1.3.6.1.4.1.343.8.6")
        );
        assert_eq!(
            role_oid(role::SERVER).as_deref(),
            Some("1.3.6.1.4.1.343.8.5")
        );
        assert_eq!(role_oid(0x40), None);
    }

    #[test]
    fn bound_uuids_and_key_are_read_back() -> Result<(), Box<dyn std::error::Error>> {
        let ca = Authority::new(Shape::Modern, "T", Validity::default(), &Names::default())?;
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let names = Names::new(&["cnci"], &[]).with_uuids(&[a, b]);
        let leaf = ca.issue(role::CNCIAGENT, &names)?;
        let id = PeerIdentity::from_der(&leaf.cert_der)?;
        assert_eq!((id.roles, id.uuids.clone()), (role::CNCIAGENT, vec![a, b]));
        let again = PeerIdentity::from_der(&ca.issue(role::CNCIAGENT, &names)?.cert_der)?;
        assert!(
            id.same_key(&id) && !id.same_key(&again),
            "a new key is another holder"
        );
        let unbound = PeerIdentity::from_der(&ca.issue(role::AGENT, &Names::default())?.cert_der)?;
        assert!(unbound.uuids.is_empty());
        assert!(!PeerIdentity::default().same_key(&PeerIdentity::default()));
        Ok(())
    }

    #[test]
    fn modern_shape_roles_and_extensions() -> Result<(), Box<dyn std::error::Error>> {
        let ca = Authority::new(
            Shape::Modern,
            "Ciao Test",
            Validity::default(),
            &Names::default(),
        )?;
        assert_eq!(roles_of(&ca.anchor().cert_der)?, 0);
        let leaf = ca.issue(role::AGENT | role::NETAGENT, &Names::new(&["node1"], &[]))?;
        assert_eq!(roles_of(&leaf.cert_der)?, role::AGENT | role::NETAGENT);
        let (_, x) = X509Certificate::from_der(&leaf.cert_der)?;
        let eku = x.extended_key_usage()?.ok_or("no EKU")?.value;
        assert!(eku.server_auth && eku.client_auth && !eku.any);
        let ski = x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER;
        let aki = x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER;
        assert!(x.get_extension_unique(&ski)?.is_some());
        assert!(x.get_extension_unique(&aki)?.is_some());
        assert!(!x.is_ca());
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        Ok(())
    }
}
