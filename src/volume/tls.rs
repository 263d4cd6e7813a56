//! The volume channel's security: the destination's key material (generated once, kept under
//! `DIR/.ferry/keys/`), the connection secret handed to the source, and rustls configurations
//! that speak only TLS 1.3 and accept exactly one pinned certificate on each side. No CA, no
//! name checks: a peer is who it is because its certificate's SHA-256 is the one we pinned.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::durable;

/// What a source needs to reach and trust one destination (the `--secret-out` file).
#[derive(Clone, Serialize, Deserialize)]
pub struct Secret {
    pub address: String,
    /// SHA-256 (hex) of the destination's certificate (DER).
    pub server_fingerprint: String,
    /// The source's client certificate and key (PEM), issued by the destination.
    pub client_cert: String,
    pub client_key: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("address", &self.address)
            .field("server_fingerprint", &self.server_fingerprint)
            .finish_non_exhaustive()
    }
}

impl Secret {
    pub fn load(path: &Path) -> anyhow::Result<Secret> {
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read the secret file {}", path.display()))?;
        let secret: Secret = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a ferry volume secret", path.display()))?;
        // A damaged secret is said here, naming the file and the field, rather than as a
        // TLS failure (or a destination "that is not the one named") once connected.
        let damaged = |what: String| anyhow::anyhow!("{} is damaged: {what}", path.display());
        if secret.server_fingerprint.len() != 64
            || !secret
                .server_fingerprint
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        {
            return Err(damaged(
                "its server_fingerprint is not a SHA-256 in hex (64 characters)".into(),
            ));
        }
        client_config(&secret).map_err(|e| damaged(format!("{e:#}")))?;
        Ok(secret)
    }

    /// Writes the secret readable by its owner only, durably.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        durable::write_file(path, &text, 0o600).context("writing the secret file")
    }
}

/// SHA-256 of a certificate's DER, lower-case hex.
pub fn fingerprint(cert: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(cert))
}

/// The destination's identity and the one client identity it accepts.
pub struct Keys {
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl Keys {
    /// Loads the keys under `dir`, generating them the first time.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Keys> {
        let file = |n: &str| -> PathBuf { dir.join(n) };
        if file("server.key").exists() {
            let read = |n: &str| {
                std::fs::read_to_string(file(n))
                    .with_context(|| format!("cannot read {}", file(n).display()))
            };
            return Ok(Keys {
                server_cert: read("server.crt")?,
                server_key: read("server.key")?,
                client_cert: read("client.crt")?,
                client_key: read("client.key")?,
            });
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (server_cert, server_key) = generate("ferry-volume-destination")?;
        let (client_cert, client_key) = generate("ferry-volume-source")?;
        // The server key goes last: its presence says the set is complete.
        durable::write_file(&file("server.crt"), server_cert.as_bytes(), 0o644)?;
        durable::write_file(&file("client.crt"), client_cert.as_bytes(), 0o644)?;
        durable::write_file(&file("client.key"), client_key.as_bytes(), 0o600)?;
        durable::write_file(&file("server.key"), server_key.as_bytes(), 0o600)?;
        Ok(Keys {
            server_cert,
            server_key,
            client_cert,
            client_key,
        })
    }

    pub fn secret(&self, address: String) -> anyhow::Result<Secret> {
        Ok(Secret {
            address,
            server_fingerprint: fingerprint(&cert_der(&self.server_cert)?),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        })
    }

    /// TLS 1.3 server configuration that demands the pinned client certificate.
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = provider();
        let pinned = fingerprint(&cert_der(&self.client_cert)?);
        let verifier = Arc::new(Pinned {
            fingerprint: pinned,
            algorithms: provider.signature_verification_algorithms,
        });
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert_der(&self.server_cert)?],
                key_der(&self.server_key)?,
            )?;
        Ok(config)
    }
}

/// TLS 1.3 client configuration that presents the secret's certificate and accepts only the
/// pinned destination.
pub fn client_config(secret: &Secret) -> anyhow::Result<rustls::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        fingerprint: secret.server_fingerprint.to_ascii_lowercase(),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![cert_der(&secret.client_cert).context("its client_cert")?],
            key_der(&secret.client_key).context("its client_key")?,
        )
        .map_err(|e| anyhow::anyhow!("its client_key does not go with its client_cert ({e})"))?;
    Ok(config)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn generate(name: &str) -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn cert_der(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    match CertificateDer::from_pem_slice(pem.as_bytes()) {
        Ok(c) => Ok(c),
        Err(e) => bail!("not a PEM certificate: {e}"),
    }
}

fn key_der(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(k) => Ok(k),
        Err(e) => bail!("not a PEM private key: {e}"),
    }
}

/// Accepts exactly one certificate, by fingerprint, and checks the handshake signature made
/// with its key.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if fingerprint(cert) == self.fingerprint {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// The handshake-signature half of both verifier traits: TLS 1.3 only, checked with the
/// pinned certificate's key.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    signature_checks!();
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    signature_checks!();
}
