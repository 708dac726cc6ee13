//! The node's TLS configurations: certificate files → rustls server
//! configs, swapped whole on SIGHUP.
//!
//! Ground rules:
//! - one place reads `[tls]`: [`NodeTls::load`] at start (a bad file stops
//!   the node with the file's name), [`NodeTls::reload`] on SIGHUP (a bad
//!   file keeps the configs in force and says what failed);
//! - the accept paths take [`NodeTls::streams`] / [`NodeTls::admin`] per
//!   connection, so a reload reaches every new handshake on every shard at
//!   once, and sessions already open keep the certificate they began with
//!   (their `ServerConnection` holds it);
//! - TLS 1.2 and 1.3 only, through the `ring` provider (see Cargo.toml for
//!   why not aws-lc-rs); the admin config asks for HTTP/1.1 by ALPN and,
//!   with `tls.admin_client_ca`, for a client certificate from that CA.
//!
//! The stream layer that speaks TLS over a socket is
//! `transport::tls`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring as provider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::config::TlsSettings;
use super::reload::LivePart;

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {message}")]
    File {
        /// Which setting names the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the combination (e.g. a key that is not the
    /// certificate's).
    #[error("{what}: {source}")]
    Rustls {
        /// Which config was being built.
        what: &'static str,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA file.
    #[error("tls.admin_client_ca {path}: {message}")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// The TLS configs in force, shared by every shard.
#[derive(Debug)]
pub struct NodeTls {
    /// For the native, MQTT and WebSocket TLS listeners.
    streams: RwLock<Arc<ServerConfig>>,
    /// For the admin port, when it speaks HTTPS.
    admin: Option<RwLock<Arc<ServerConfig>>>,
}

impl NodeTls {
    /// The configs `settings` describe; `None` when no listener uses TLS.
    pub fn load(settings: &TlsSettings) -> Result<Option<Arc<NodeTls>>, TlsError> {
        if !settings.used() {
            return Ok(None);
        }
        let (streams, admin) = build(settings)?;
        Ok(Some(Arc::new(NodeTls {
            streams: RwLock::new(streams),
            admin: admin.map(RwLock::new),
        })))
    }

    /// Reads the files again and puts the new configs in force for new
    /// handshakes; on any error nothing changes.
    pub fn reload(&self, settings: &TlsSettings) -> Result<(), TlsError> {
        let (streams, admin) = build(settings)?;
        *self.streams.write().unwrap_or_else(|p| p.into_inner()) = streams;
        if let (Some(slot), Some(config)) = (&self.admin, admin) {
            *slot.write().unwrap_or_else(|p| p.into_inner()) = config;
        }
        Ok(())
    }

    /// The config for a new native, MQTT or WebSocket TLS connection.
    pub fn streams(&self) -> Arc<ServerConfig> {
        self.streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The config for a new admin connection, if the admin port speaks
    /// HTTPS.
    pub fn admin(&self) -> Option<Arc<ServerConfig>> {
        self.admin
            .as_ref()
            .map(|slot| slot.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The streams' config and, with `tls.admin`, the admin port's.
fn build(
    settings: &TlsSettings,
) -> Result<(Arc<ServerConfig>, Option<Arc<ServerConfig>>), TlsError> {
    let chain = read_chain(&settings.cert)?;
    let key = read_key(&settings.key)?;
    let streams = builder()
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|source| TlsError::Rustls {
            what: "tls.cert and tls.key",
            source,
        })?;
    let admin = match settings.admin {
        false => None,
        true => {
            let verifier = match settings.admin_client_ca.as_os_str().is_empty() {
                true => WebPkiClientVerifier::no_client_auth(),
                false => client_verifier(&settings.admin_client_ca)?,
            };
            let mut config = builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .map_err(|source| TlsError::Rustls {
                    what: "tls.cert and tls.key (admin)",
                    source,
                })?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(config))
        }
    };
    Ok((Arc::new(streams), admin))
}

/// The crypto provider: ring's. rustls 0.23.48 marks it deprecated because
/// ring has no post-quantum key exchange (X25519MLKEM768 needs aws-lc-rs);
/// we keep ring for now because the build already has it and aws-lc-rs
/// adds a large C build (cmake on some targets) to every CI run. Switching
/// is this function and the Cargo feature.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(provider::default_provider())
}

fn builder() -> rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier> {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        what: "tls.cert",
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if chain.is_empty() {
        return Err(err("no CERTIFICATE in the file".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: "tls.key",
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn client_verifier(
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let err = |message: String| TlsError::ClientCa {
        path: path.to_owned(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| err(e.to_string()))
}

/// `tls.cert`, `tls.key`, `tls.admin_client_ca`: read again on every
/// SIGHUP (changed paths or not: a renewed certificate keeps its path).
pub struct TlsPart(pub Arc<NodeTls>);

impl LivePart for TlsPart {
    fn settings(&self) -> &'static [&'static str] {
        &["tls.cert", "tls.key", "tls.admin_client_ca"]
    }

    fn apply(&self, config: &super::config::Config) -> Result<Option<String>, String> {
        match self.0.reload(&config.tls) {
            Ok(()) => Ok(Some(format!(
                "TLS certificate {} reloaded for new connections",
                config.tls.cert.display()
            ))),
            Err(e) => Err(format!(
                "TLS certificate not reloaded, the running one stays: {e}"
            )),
        }
    }
}
