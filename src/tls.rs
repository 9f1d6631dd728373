//! TLS client settings shared by MQTT (`mqtts://`) and `POST /url`'s https downloads: the ring
//! provider, the safe protocol versions, and the system's CA certificates when no others are given.

use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::{ClientConfig, ConfigBuilder, RootCertStore};

/// The system's CA certificates; `None` when it has none (the ca-certificates package is missing).
pub(crate) fn system_roots() -> Option<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    (!roots.is_empty()).then_some(roots)
}

/// A client configuration trusting `roots`, to finish with or without a client certificate.
pub(crate) fn client(roots: RootCertStore) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots))
}
