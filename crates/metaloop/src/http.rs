//! HTTP clients (webhooks, witnesses, cosigners, the API client): reqwest over rustls with
//! the ring crypto provider, installed as the process default before the first client is
//! built. Build clients here, never with `reqwest::Client::new()`: reqwest is compiled
//! without a provider of its own and panics if none is installed.

use std::sync::Once;

/// Installs ring as the process's rustls crypto provider, once; a provider installed
/// earlier by the embedding program is kept.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // a race with another installer leaves theirs in place, which is as good
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

/// A client builder with TLS ready.
pub fn builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// A client with reqwest's defaults.
pub fn client() -> reqwest::Client {
    builder()
        .build()
        .expect("an HTTP client with default settings builds")
}

#[cfg(test)]
mod tests {
    /// An HTTPS client builds with the ring provider (reqwest has none of its own here).
    #[test]
    fn https_clients_build() {
        let c = super::builder().https_only(true).build();
        assert!(c.is_ok(), "{c:?}");
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
