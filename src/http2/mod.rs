//! HTTP/2 wire format (RFC 9113) and header compression (RFC 7541), pure: bytes in, values
//! out. The connection that uses them is `server::h2native`.

pub mod frame;
pub mod hpack;
