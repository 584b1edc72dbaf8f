//! Real mutual TLS over 127.0.0.1 with generated ciao-shaped and modern certificates.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, ServerName};
use ssntp::certs::{roles_of, Authority, Issued, Names, Shape, Validity};
use ssntp::frame::role;
use ssntp::tls::{
    ca_from_pem, client_config, peer_roles, server_config, ClientOptions, Identity, ServerOptions,
    SsntpServerVerifier,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// RSA key generation is slow in debug builds, so the ciao deployment is made once.
struct Ciao {
    ca: Authority,
    cnci: Issued,
}

fn ciao() -> &'static Ciao {
    static CIAO: OnceLock<Ciao> = OnceLock::new();
    CIAO.get_or_init(|| {
        let names = Names::new(&["localhost"], &[LOCALHOST]);
        let ca = Authority::new(Shape::Ciao, "Ciao Deployment", Validity::default(), &names)
            .expect("ciao anchor");
        let cnci = ca
            .issue(role::CNCIAGENT, &Names::default())
            .expect("cnci leaf");
        Ciao { ca, cnci }
    })
}

fn identity(i: &Issued) -> Res<Identity> {
    Ok(Identity::from_pem(i.combined_pem().as_bytes())?)
}

fn ca_der(ca: &Authority) -> Res<CertificateDer<'static>> {
    Ok(ca_from_pem(ca.cert_pem().as_bytes())?)
}

struct Outcome {
    server: Res<(u32, Vec<u8>)>,
    client: Res<(u32, Vec<u8>)>,
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::CipherSuite>,
}

/// Runs one handshake plus a ping/pong; each side reports the peer roles and what it read.
async fn run(
    server_cfg: Arc<rustls::ServerConfig>,
    client_cfg: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> Res<Outcome> {
    let listener = TcpListener::bind((LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let r: Res<(u32, Vec<u8>)> = async {
            let (tcp, _) = listener.accept().await?;
            let mut tls = TlsAcceptor::from(server_cfg).accept(tcp).await?;
            let roles = peer_roles(tls.get_ref().1);
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(b"pong").await?;
            tls.flush().await?;
            Ok((roles, buf.to_vec()))
        }
        .await;
        r
    });
    let mut version = None;
    let mut suite = None;
    let client: Res<(u32, Vec<u8>)> = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(client_cfg).connect(name, tcp).await?;
        let conn = tls.get_ref().1;
        version = conn.protocol_version();
        suite = conn.negotiated_cipher_suite().map(|s| s.suite());
        let roles = peer_roles(conn);
        tls.write_all(b"ping").await?;
        tls.flush().await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        Ok((roles, buf.to_vec()))
    }
    .await;
    let server = tokio::time::timeout(Duration::from_secs(20), server).await??;
    Ok(Outcome {
        server,
        client,
        version,
        suite,
    })
}

fn ip_name() -> ServerName<'static> {
    ServerName::IpAddress(LOCALHOST.into())
}

#[tokio::test]
async fn ciao_shape_connects_with_roles() -> Res {
    let c = ciao();
    let ca = ca_der(&c.ca)?;
    let scfg = server_config(&ca, identity(c.ca.anchor())?, &ServerOptions::default())?;
    let opts = ClientOptions {
        required_server_roles: role::SCHEDULER,
        ..Default::default()
    };
    let ccfg = client_config(&ca, identity(&c.cnci)?, &opts)?;
    let out = run(scfg, ccfg, ip_name()).await?;
    let (client_roles, got) = out.server?;
    assert_eq!(client_roles, role::CNCIAGENT);
    assert_eq!(got, b"ping");
    let (server_roles, got) = out.client?;
    assert_eq!(server_roles, role::SCHEDULER);
    assert_eq!(got, b"pong");
    assert_eq!(out.version, Some(rustls::ProtocolVersion::TLSv1_3));
    Ok(())
}

#[tokio::test]
async fn ciao_shape_over_tls12_uses_ecdhe_rsa_gcm() -> Res {
    let c = ciao();
    let ca = ca_der(&c.ca)?;
    let scfg = server_config(&ca, identity(c.ca.anchor())?, &ServerOptions::default())?;
    // A Go 1.8-era peer: TLS 1.2 only.
    let id = identity(&c.cnci)?;
    let verifier = Arc::new(SsntpServerVerifier::new(&ca, &ClientOptions::default())?);
    let ccfg = rustls::ClientConfig::builder_with_provider(ssntp::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(id.chain, id.key)?;
    let out = run(scfg, Arc::new(ccfg), ip_name()).await?;
    assert_eq!(out.server?.0, role::CNCIAGENT);
    assert_eq!(out.client?.0, role::SCHEDULER);
    assert_eq!(out.version, Some(rustls::ProtocolVersion::TLSv1_2));
    let suite = format!("{:?}", out.suite);
    assert!(
        suite.contains("ECDHE_RSA") && suite.contains("GCM"),
        "{suite}"
    );
    Ok(())
}

#[tokio::test]
async fn modern_shape_connects_by_dns_name() -> Res {
    let ca = Authority::new(
        Shape::Modern,
        "Ciao Test",
        Validity::default(),
        &Names::default(),
    )?;
    let sched = ca.issue(role::SCHEDULER, &Names::new(&["localhost"], &[]))?;
    let agent = ca.issue(role::AGENT | role::NETAGENT, &Names::default())?;
    let ca_cert = ca_der(&ca)?;
    let scfg = server_config(&ca_cert, identity(&sched)?, &ServerOptions::default())?;
    let ccfg = client_config(&ca_cert, identity(&agent)?, &ClientOptions::default())?;
    let out = run(scfg, ccfg, ServerName::try_from("localhost")?).await?;
    assert_eq!(out.server?.0, role::AGENT | role::NETAGENT);
    assert_eq!(out.client?.0, role::SCHEDULER);
    Ok(())
}

#[tokio::test]
async fn expired_client_certificate_is_refused() -> Res {
    let c = ciao();
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let expired = c.ca.issue_with_validity(
        role::AGENT,
        &Names::default(),
        Validity::between(now - 10 * day, now - day)?,
    )?;
    let ca = ca_der(&c.ca)?;
    let scfg = server_config(&ca, identity(c.ca.anchor())?, &ServerOptions::default())?;
    let ccfg = client_config(&ca, identity(&expired)?, &ClientOptions::default())?;
    let out = run(scfg, ccfg, ip_name()).await?;
    let err = out
        .server
        .err()
        .ok_or("server accepted an expired certificate")?;
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
    assert!(out.client.is_err());
    Ok(())
}

#[tokio::test]
async fn foreign_ca_is_refused_both_ways() -> Res {
    let c = ciao();
    // Same organisation, so the issuer name matches: only the signature check can catch it.
    let foreign = Authority::new(
        Shape::Ciao,
        "Ciao Deployment",
        Validity::default(),
        &Names::new(&["localhost"], &[LOCALHOST]),
    )?;
    let intruder = foreign.issue(role::CNCIAGENT, &Names::default())?;
    let ca = ca_der(&c.ca)?;

    // Client certificate from the foreign CA.
    let scfg = server_config(&ca, identity(c.ca.anchor())?, &ServerOptions::default())?;
    let ccfg = client_config(&ca, identity(&intruder)?, &ClientOptions::default())?;
    let out = run(scfg, ccfg, ip_name()).await?;
    let err = out
        .server
        .err()
        .ok_or("server accepted a foreign client certificate")?;
    assert!(err.to_string().contains("BadSignature"), "{err}");
    assert!(out.client.is_err());

    // Server (anchor) certificate from the foreign CA.
    let scfg = server_config(&ca, identity(foreign.anchor())?, &ServerOptions::default())?;
    let ccfg = client_config(&ca, identity(&c.cnci)?, &ClientOptions::default())?;
    let out = run(scfg, ccfg, ip_name()).await?;
    let err = out
        .client
        .err()
        .ok_or("client accepted a foreign server certificate")?;
    assert!(err.to_string().contains("BadSignature"), "{err}");
    assert!(out.server.is_err());
    Ok(())
}

#[tokio::test]
async fn server_name_is_checked_unless_disabled() -> Res {
    let c = ciao();
    let ca = ca_der(&c.ca)?;
    let wrong = ServerName::try_from("scheduler.example")?;
    let scfg = server_config(&ca, identity(c.ca.anchor())?, &ServerOptions::default())?;
    let ccfg = client_config(&ca, identity(&c.cnci)?, &ClientOptions::default())?;
    let out = run(scfg.clone(), ccfg, wrong.clone()).await?;
    let err = out.client.err().ok_or("SAN mismatch accepted")?;
    assert!(err.to_string().contains("NotValidForName"), "{err}");

    let lax = ClientOptions {
        verify_server_name: false,
        ..Default::default()
    };
    let ccfg = client_config(&ca, identity(&c.cnci)?, &lax)?;
    let out = run(scfg, ccfg, wrong).await?;
    assert_eq!(out.client?.0, role::SCHEDULER);
    Ok(())
}

#[tokio::test]
async fn required_roles_are_enforced() -> Res {
    let c = ciao();
    let ca = ca_der(&c.ca)?;
    let opts = ServerOptions {
        required_client_roles: role::AGENT,
    };
    let scfg = server_config(&ca, identity(c.ca.anchor())?, &opts)?;
    let ccfg = client_config(&ca, identity(&c.cnci)?, &ClientOptions::default())?;
    let out = run(scfg, ccfg, ip_name()).await?;
    let err = out
        .server
        .err()
        .ok_or("CNCI cert accepted where AGENT was required")?;
    assert!(
        err.to_string().contains("ApplicationVerificationFailure"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn pem_files_round_trip() -> Res {
    let c = ciao();
    let dir = std::env::temp_dir().join(format!("ssntp-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca_path = dir.join("CAcert-localhost.pem");
    let sched_path = dir.join("cert-Scheduler-localhost.pem");
    let cnci_path = dir.join("cert-CNCIAgent-localhost.pem");
    std::fs::write(&ca_path, c.ca.cert_pem())?;
    std::fs::write(&sched_path, c.ca.anchor().combined_pem())?;
    std::fs::write(&cnci_path, c.cnci.combined_pem())?;

    // ciao's layout: certificate then PKCS#1 key in one file; CA file has the certificate only.
    let cnci_text = std::fs::read_to_string(&cnci_path)?;
    assert!(cnci_text.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(cnci_text.contains("-----BEGIN RSA PRIVATE KEY-----"));
    let ca_text = std::fs::read_to_string(&ca_path)?;
    assert!(!ca_text.contains("PRIVATE KEY"));

    let ca = ca_from_pem(&std::fs::read(&ca_path)?)?;
    assert_eq!(ca.as_ref(), c.ca.anchor().cert_der.as_slice());
    let sched = Identity::from_pem(&std::fs::read(&sched_path)?)?;
    let cnci = Identity::from_pem(&std::fs::read(&cnci_path)?)?;
    assert_eq!(roles_of(&cnci.chain[0])?, role::CNCIAGENT);

    let scfg = server_config(&ca, sched, &ServerOptions::default())?;
    let ccfg = client_config(&ca, cnci, &ClientOptions::default())?;
    let out = run(scfg, ccfg, ip_name()).await?;
    assert_eq!(out.server?.0, role::CNCIAGENT);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn pkcs8_keys_are_accepted_for_ciao_certs() -> Res {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let c = ciao();
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(&c.cnci.key_pem)?;
    let pkcs8 = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)?;
    let id = Identity::from_pem_parts(c.cnci.cert_pem.as_bytes(), pkcs8.as_bytes())?;
    let ca = ca_der(&c.ca)?;
    let scfg = server_config(&ca, identity(c.ca.anchor())?, &ServerOptions::default())?;
    let ccfg = client_config(&ca, id, &ClientOptions::default())?;
    let out = run(scfg, ccfg, ip_name()).await?;
    assert_eq!(out.server?.0, role::CNCIAGENT);
    Ok(())
}

#[test]
fn ciao_shape_matches_ciao_cert() -> Res {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let c = ciao();
    let (_, anchor) = X509Certificate::from_der(&c.ca.anchor().cert_der)?;
    let (_, leaf) = X509Certificate::from_der(&c.cnci.cert_der)?;

    assert!(anchor.is_ca());
    assert_eq!(anchor.subject().as_raw(), anchor.issuer().as_raw());
    assert_eq!(leaf.issuer().as_raw(), anchor.subject().as_raw());
    assert_eq!(leaf.subject().as_raw(), leaf.issuer().as_raw());
    assert_eq!(leaf.subject().to_string(), "O=Ciao Deployment");
    assert!(!leaf.is_ca());
    let bc = leaf
        .basic_constraints()?
        .ok_or("leaf lacks BasicConstraints")?;
    assert!(!bc.value.ca);

    let ski = x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER;
    let aki = x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER;
    assert!(leaf.get_extension_unique(&ski)?.is_none());
    assert!(leaf.get_extension_unique(&aki)?.is_none());

    let eku = leaf.extended_key_usage()?.ok_or("no EKU")?.value;
    assert!(eku.any && !eku.server_auth && !eku.client_auth);
    let ku = leaf.key_usage()?.ok_or("no KU")?.value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let ku = anchor.key_usage()?.ok_or("no KU")?.value;
    assert!(ku.key_cert_sign());
    assert_eq!(roles_of(&c.ca.anchor().cert_der)?, role::SCHEDULER);

    // The CNCIAGENT OID as DER, straight from reference/ssntp.md §1.1.
    let oid = [
        0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x57, 0x08, 0x06,
    ];
    assert!(c.cnci.cert_der.windows(oid.len()).any(|w| w == oid));

    assert_eq!(
        leaf.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_PKCS1_SHA256WITHRSA
    );
    let secs = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert_eq!(secs, 365 * 86_400);
    Ok(())
}

#[tokio::test]
async fn reloaded_anchor_issues_accepted_certificates() -> Res {
    let c = ciao();
    // ciao-deploy keeps cert-Scheduler-<host>.pem (certificate + PKCS#1 key in one file).
    let combined = c.ca.anchor().combined_pem();
    let reloaded = Authority::from_pem(Shape::Ciao, &combined, &combined)?;
    assert_eq!(reloaded.cert_pem(), c.ca.cert_pem());
    let agent = reloaded.issue(role::AGENT | role::NETAGENT, &Names::default())?;
    let ca = ca_der(&c.ca)?;
    let scfg = server_config(&ca, identity(c.ca.anchor())?, &ServerOptions::default())?;
    let ccfg = client_config(&ca, identity(&agent)?, &ClientOptions::default())?;
    let out = run(scfg, ccfg, ip_name()).await?;
    assert_eq!(out.server?.0, role::AGENT | role::NETAGENT);

    // A key that is not the anchor's is refused.
    let err = Authority::from_pem(Shape::Ciao, c.ca.cert_pem(), &c.cnci.key_pem);
    assert!(matches!(err, Err(ssntp::certs::CertError::KeyMismatch)));
    Ok(())
}
