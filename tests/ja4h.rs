//! JA4H on the request path, only in a build with the `ja4h` feature (FoxIO License 1.1; off
//! by default, see README.md). `scripts/test.sh` runs this file with `--features ja4h`; the
//! default build compiles it to nothing.
#![cfg(feature = "ja4h")]

mod common;

use common::*;

#[tokio::test]
async fn ja4h_reaches_the_upstream_and_a_client_copy_does_not() {
    let (proxy, _up) = proxy_with_mock().await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert", DEV_CERT])
        .args([
            "-H",
            "x-portcullis-ja4h: forged",
            "-H",
            "accept-language: en-US",
        ])
        .arg(format!("https://localhost:{}/v1/echo", proxy.addr.port()))
        .output()
        .await
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = echo_headers(&String::from_utf8_lossy(&out.stdout));
    let ja4h = h["x-portcullis-ja4h"].as_str().expect("ja4h header");
    // JA4H.md: method "ge", HTTP/1.1 "11", no cookie "n", no referer "n", the header count
    // (Host, User-Agent, Accept, Accept-Language and our forged one: 5), the first four
    // characters of Accept-Language ("enus"), then three 12-hex-digit hashes.
    let parts: Vec<&str> = ja4h.split('_').collect();
    assert_eq!(parts.len(), 4, "{ja4h}");
    assert_eq!(parts[0], "ge11nn05enus", "{ja4h}");
    for p in &parts[1..] {
        assert!(
            p.len() == 12 && p.bytes().all(|b| b.is_ascii_hexdigit()),
            "{ja4h}"
        );
    }
    proxy.stop().await;
}
