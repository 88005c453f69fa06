//! TLS: the listener's server config (certificates chosen by SNI, optional client
//! certificates) and the client configs of https upstreams. Everything here is built at
//! config load, so a broken certificate is an error with its key path, and a reload that
//! brings one is refused while the running config keeps serving.
//!
//! rustls runs on the ring provider, with its safe defaults (TLS 1.3 and 1.2 with
//! AEAD-only ECDHE suites, no renegotiation, no 0-RTT). ALPN offers `h2` and `http/1.1`;
//! the listener picks hyper's HTTP/2 or HTTP/1.1 server from what was negotiated.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// ALPN identifiers, in our order of preference.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// What a connection to an https upstream needs, built once at config load.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The name the upstream's certificate must match (and the SNI sent).
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Every certificate in a PEM file, leaf first (a full chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1). The message never quotes
/// the file's contents.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        format!(
            "{}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        )
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A certificate chain and its key, checked to belong together.
pub fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("{}: unusable private key ({e})", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => {}
        // A key type rustls cannot compare: the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(format!(
                "{} does not belong to the certificate in {}",
                key.display(),
                cert.display()
            ))
        }
    }
    webpki::EndEntityCert::try_from(&ck.cert[0]).map_err(|e| {
        format!(
            "{}: the first certificate cannot be parsed ({e})",
            cert.display()
        )
    })?;
    Ok(Arc::new(ck))
}

/// Chooses the certificate by the name the client asked for (SNI): the first of the
/// `sni` certificates whose names (SANs) cover it, else the default one. A client that
/// sends no name, or one no certificate covers, gets the default.
#[derive(Debug)]
pub struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    pub fn new(default: Arc<CertifiedKey>, by_name: Vec<Arc<CertifiedKey>>) -> Self {
        SniResolver { default, by_name }
    }

    /// The certificate for `name`.
    pub fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.and_then(|n| ServerName::try_from(n).ok()) else {
            return self.default.clone();
        };
        self.by_name
            .iter()
            .find(|ck| covers(ck, &name))
            .unwrap_or(&self.default)
            .clone()
    }
}

fn covers(ck: &CertifiedKey, name: &ServerName<'_>) -> bool {
    // Parsing an end-entity certificate is a few microseconds: cheaper than a cache an
    // attacker could fill with made-up names, and there are only a handful of them.
    webpki::EndEntityCert::try_from(&ck.cert[0])
        .map(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
        .unwrap_or(false)
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// How the listener treats client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate from `client_ca`.
    Required,
    /// A certificate is checked if presented; clients without one are let in.
    Optional,
}

/// Roots from a PEM bundle.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate ({e})", path.display()))?;
    }
    Ok(roots)
}

/// The listener's TLS settings as read from the config.
pub struct ServerSettings<'a> {
    pub resolver: SniResolver,
    pub client_ca: Option<(&'a Path, ClientAuth)>,
    pub tls13_only: bool,
}

/// Builds the listener's rustls config.
pub fn server_config(s: ServerSettings<'_>) -> Result<Arc<rustls::ServerConfig>, String> {
    let versions: &[&rustls::SupportedProtocolVersion] = if s.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| format!("unsupported TLS versions ({e})"))?;
    let builder = match s.client_ca {
        None => builder.with_no_client_auth(),
        Some((path, auth)) => {
            let roots = Arc::new(load_roots(path)?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let v = match auth {
                ClientAuth::Required => v,
                ClientAuth::Optional => v.allow_unauthenticated(),
            };
            let verifier = v
                .build()
                .map_err(|e| format!("{}: cannot verify clients with it ({e})", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(s.resolver));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    // Session tickets let a sender that reconnects skip the full handshake.
    if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
        config.ticketer = ticketer;
    }
    Ok(Arc::new(config))
}

/// The system's trusted roots, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "none found".into());
                return Err(format!(
                    "no system CA certificates ({why}); set `upstream_tls.ca` to a CA bundle"
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// Client settings for https upstreams.
pub struct ClientSettings<'a> {
    /// A CA bundle to trust instead of the system's roots.
    pub ca: Option<&'a Path>,
    /// A client certificate and key, for upstreams that require mTLS.
    pub identity: Option<(&'a Path, &'a Path)>,
}

/// Builds the client config for https upstreams. Errors name the file at fault.
pub fn client_config(s: ClientSettings<'_>) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = match s.ca {
        Some(path) => Arc::new(load_roots(path)?),
        None => system_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("unsupported TLS versions ({e})"))?
        .with_root_certificates(roots);
    let mut config = match s.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let ck = certified_key(cert, key)?;
            builder
                .with_client_auth_cert(ck.cert.clone(), load_key(key)?)
                .map_err(|e| format!("{}: unusable client certificate ({e})", cert.display()))?
        }
    };
    // Our upstream client speaks HTTP/1.1 only.
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    struct Files {
        dir: std::path::PathBuf,
    }

    impl Files {
        fn new(tag: &str) -> Files {
            let dir =
                std::env::temp_dir().join(format!("hookgate-tls-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Files { dir }
        }
        fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
            let p = self.dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
        /// A self-signed certificate for `names`, written as NAME.crt and NAME.key.
        fn self_signed(
            &self,
            file: &str,
            names: &[&str],
        ) -> (std::path::PathBuf, std::path::PathBuf) {
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let cert = params.self_signed(&key).unwrap();
            (
                self.write(&format!("{file}.crt"), &cert.pem()),
                self.write(&format!("{file}.key"), &key.serialize_pem()),
            )
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn sni_picks_the_certificate_whose_names_cover_the_request() {
        let f = Files::new("sni");
        let (c0, k0) = f.self_signed("default", &["default.example"]);
        let (c1, k1) = f.self_signed("a", &["a.example", "*.wild.example"]);
        let (c2, k2) = f.self_signed("b", &["b.example"]);
        let d = certified_key(&c0, &k0).unwrap();
        let a = certified_key(&c1, &k1).unwrap();
        let b = certified_key(&c2, &k2).unwrap();
        let r = SniResolver::new(d.clone(), vec![a.clone(), b.clone()]);
        assert!(Arc::ptr_eq(&r.pick(Some("a.example")), &a));
        assert!(Arc::ptr_eq(&r.pick(Some("x.wild.example")), &a));
        assert!(Arc::ptr_eq(&r.pick(Some("b.example")), &b));
        assert!(Arc::ptr_eq(&r.pick(Some("c.example")), &d));
        assert!(Arc::ptr_eq(&r.pick(None), &d));
    }

    #[test]
    fn broken_files_are_named_and_never_quoted() {
        let f = Files::new("broken");
        let (c0, k0) = f.self_signed("one", &["one.example"]);
        let (_, k1) = f.self_signed("two", &["two.example"]);
        let missing = f.dir.join("missing.crt");
        assert!(certified_key(&missing, &k0)
            .unwrap_err()
            .contains("cannot read"));
        let garbage = f.write("garbage.crt", "not a certificate\n");
        assert!(certified_key(&garbage, &k0)
            .unwrap_err()
            .contains("no PEM certificate"));
        let secret_text = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBtYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
        let bad_key = f.write("bad.key", secret_text);
        let err = certified_key(&c0, &bad_key).unwrap_err();
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let err = certified_key(&c0, &k1).unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
        assert!(certified_key(&c0, &k0).is_ok());
    }

    #[test]
    fn server_config_offers_h2_and_http11_and_checks_the_client_ca() {
        let f = Files::new("server");
        let (c0, k0) = f.self_signed("default", &["localhost"]);
        let resolver = || SniResolver::new(certified_key(&c0, &k0).unwrap(), vec![]);
        let cfg = server_config(ServerSettings {
            resolver: resolver(),
            client_ca: None,
            tls13_only: false,
        })
        .unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(server_config(ServerSettings {
            resolver: resolver(),
            client_ca: Some((&c0, ClientAuth::Required)),
            tls13_only: true,
        })
        .is_ok());
        let garbage = f.write("ca.pem", "nothing\n");
        let err = server_config(ServerSettings {
            resolver: resolver(),
            client_ca: Some((&garbage, ClientAuth::Optional)),
            tls13_only: false,
        })
        .unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
