//! portcullis: a TLS-terminating edge reverse proxy for a model API.
//!
//! The path of one connection (see `docs/ARCHITECTURE.md`): accept → optional PROXY header →
//! ClientHello capture and fingerprint ([`fingerprint`]) → rustls → hyper → forward
//! ([`forward`]). The pure modules take bytes and return values; the IO shell ([`server`]) is
//! thin around them.

pub mod admin;
pub mod config;
pub mod evidence;
pub mod fingerprint;
pub mod forward;
pub mod gate;
pub mod http2;
mod idhash;
pub mod investigate;
pub mod limit;
pub mod mock;
pub mod policy;
pub mod server;
