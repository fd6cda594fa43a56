//! Known-answer tests on ClientHellos captured from real clients on this machine (curl,
//! openssl s_client, Python ssl, wget, headless Chromium, rustls).
//!
//! The bytes are in `tests/fixtures/captured/<client>.bin` (made by
//! `scripts/capture-fixtures.sh`); the expected values in `expected.json` come from
//! `scripts/ja4_ref.py`, an independent Python implementation written from the JA3 and JA4
//! specs, validated on the 72 FoxIO vectors and cross-checked with tshark (see the README
//! there). Nothing here was produced by the Rust code under test.

use portcullis::fingerprint::{is_grease, parse_client_hello, ClientHello, Parsed};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/captured");

/// The fields compared with the reference. `_o` / `_ro` follow the spec's "Raw Output" section
/// (original order, GREASE removed, SNI and ALPN kept).
const FIELDS: [&str; 6] = ["ja3", "ja3_hash", "ja4", "ja4_r", "ja4_o", "ja4_ro"];

fn expected() -> Map<String, Value> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/expected.json")).expect("expected.json");
    match serde_json::from_str(&text).expect("expected.json is JSON") {
        Value::Object(map) => map,
        other => panic!("expected.json: want an object keyed by fixture, got {other}"),
    }
}

fn want<'a>(exp: &'a Map<String, Value>, name: &str, field: &str) -> &'a str {
    exp[name][field]
        .as_str()
        .unwrap_or_else(|| panic!("expected.json: {name}.{field}"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}.bin")).unwrap_or_else(|e| panic!("{name}.bin: {e}"))
}

/// Parse a whole capture: it must be complete and consume every byte.
fn hello(bytes: &[u8], what: &str) -> ClientHello {
    match parse_client_hello(bytes) {
        Ok(Parsed::Complete { hello, consumed }) => {
            assert_eq!(consumed, bytes.len(), "{what}: consumed");
            hello
        }
        other => panic!("{what}: expected a complete hello, got {other:?}"),
    }
}

/// Our values for `FIELDS`, in that order.
fn ours(h: &ClientHello) -> [String; 6] {
    let (ja3, ja4) = (h.ja3(), h.ja4());
    [
        ja3.full, ja3.hash, ja4.ja4, ja4.ja4_r, ja4.ja4_o, ja4.ja4_ro,
    ]
}

#[test]
fn captured_hellos_match_reference_values() {
    let exp = expected();
    let on_disk: BTreeSet<String> = std::fs::read_dir(FIXTURES)
        .expect("fixture dir")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".bin")
                .map(str::to_owned)
        })
        .collect();
    let listed: BTreeSet<String> = exp.keys().cloned().collect();
    assert_eq!(
        on_disk, listed,
        "every .bin has an expected.json entry and vice versa"
    );
    assert!(listed.len() >= 10, "only {} fixtures", listed.len());

    // Collect every difference before failing, so one run reports them all.
    let mut diffs = Vec::new();
    for name in &listed {
        let got = ours(&hello(&fixture(name), name));
        for (field, got) in FIELDS.iter().zip(got) {
            let want = want(&exp, name, field);
            if got != want {
                diffs.push(format!("{name}.{field}\n  want {want}\n  got  {got}"));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Chromium shuffles its extension order per connection (since Chrome 110): JA3, which keeps
/// the order, differs between the two captures; JA4, which sorts, does not.
#[test]
fn chromium_shuffle_changes_ja3_not_ja4() {
    let a = hello(&fixture("chromium-1"), "chromium-1");
    let b = hello(&fixture("chromium-2"), "chromium-2");
    assert_ne!(a.extensions, b.extensions, "extension order");
    assert_ne!(a.ja3().hash, b.ja3().hash);
    let sorted = |h: &ClientHello| {
        let j = h.ja4();
        (j.ja4, j.ja4_r)
    };
    assert_eq!(sorted(&a), sorted(&b), "ja4 / ja4_r");
    // Same extension set less GREASE (whose values are random too), only the order moved.
    let set = |h: &ClientHello| {
        h.extensions
            .iter()
            .copied()
            .filter(|&e| !is_grease(e))
            .collect::<BTreeSet<u16>>()
    };
    assert_eq!(set(&a), set(&b));
}

/// One rustls ClientHello (ring provider, ALPN h2 + http/1.1, SNI localhost, fresh config so
/// no resumption), as written to the wire by `write_tls`.
fn rustls_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls to a Vec");
    }
    out
}

#[test]
#[ignore = "generator: rewrites tests/fixtures/captured/rustls.bin (then rerun ja4_ref.py)"]
fn generate_rustls_fixture() {
    // scripts/capture-fixtures.sh passes its output directory through RUSTLS_HELLO_OUT.
    let path = std::env::var("RUSTLS_HELLO_OUT").unwrap_or(format!("{FIXTURES}/rustls.bin"));
    std::fs::write(&path, rustls_hello()).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// rustls (0.23.x) randomises the order of its order-insensitive extensions per connection,
/// so JA3 of a freshly made hello changes from run to run, while JA4 / JA4_r must stay equal to
/// the values the reference computed for `rustls.bin`. If a rustls upgrade changes its
/// ciphers, extensions or signature algorithms, this fails: regenerate the fixture.
#[test]
fn fresh_rustls_hellos_keep_the_recorded_ja4() {
    let exp = expected();
    let want_ja3 = want(&exp, "rustls", "ja3");
    let mut ja3s = HashSet::new();
    for i in 0..8 {
        let h = hello(&rustls_hello(), &format!("rustls #{i}"));
        let (ja3, ja4) = (h.ja3(), h.ja4());
        assert_eq!(ja4.ja4, want(&exp, "rustls", "ja4"), "rustls #{i}: ja4");
        assert_eq!(
            ja4.ja4_r,
            want(&exp, "rustls", "ja4_r"),
            "rustls #{i}: ja4_r"
        );
        // Version and ciphers (fields 1-2) and curves and point formats (4-5) are fixed.
        let fields = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        let (got, fixed) = (fields(&ja3.full), fields(want_ja3));
        assert_eq!(
            (&got[..2], &got[3..]),
            (&fixed[..2], &fixed[3..]),
            "rustls #{i}: ja3"
        );
        ja3s.insert(ja3.full);
    }
    assert!(
        ja3s.len() > 1,
        "8 rustls hellos, one extension order: did rustls stop shuffling?"
    );
}

/// JA4 part a checked by reading the bytes (offsets into the .bin, which starts at the record
/// header), independent of any implementation. The asserts pin the bytes the comments cite.
#[test]
fn part_a_hand_checked() {
    let at = |b: &[u8], off: usize, want: &[u8]| assert_eq!(&b[off..off + want.len()], want);

    // openssl.bin (`openssl s_client -connect localhost:PORT`, 297 bytes):
    //   @0   16 03 01 01 24  handshake record, 292 bytes; @5 01 00 01 20 ClientHello
    //   @9   03 03           legacy_version TLS 1.2 (JA3 field 1 = 771)
    //   @76  00 3e           cipher_suites: 62 bytes = 31 suites, none GREASE     -> "31"
    //   @142 00 99           extensions: 153 bytes = 9 extensions: 000b 000a 0023 0016 0017
    //                        000d 002b 002d 0033; none GREASE                     -> "09"
    //                        no 0000 (s_client sends no SNI for a dotless host)   -> "i"
    //                        no 0010 (no ALPN offered)                            -> "00"
    //   @236 00 2b 00 09 08  supported_versions 0304 0303 0302 0301, highest 0304 -> "13"
    //   => t13i310900
    let b = fixture("openssl");
    at(&b, 0, &[0x16, 0x03, 0x01, 0x01, 0x24]);
    at(&b, 76, &[0x00, 0x3e]);
    at(&b, 142, &[0x00, 0x99]);
    at(
        &b,
        236,
        &[0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03],
    );
    assert_eq!(&hello(&b, "openssl").ja4().ja4[..10], "t13i310900");

    // curl-http1.1.bin (`curl --http1.1`, 517 bytes):
    //   @76  00 3e           31 suites, none GREASE                               -> "31"
    //   @142 01 75           373 bytes = 12 extensions: 0000 000b 000a 0010 0016 0017 0031
    //                        000d 002b 002d 0033 0015 (padding counts)            -> "12"
    //   @144 00 00           server_name "localhost"                              -> "d"
    //   @196 00 10 00 0b 00 09 08 "http/1.1"  first ALPN value, 'h' .. '1'        -> "h1"
    //   @269 00 2b 00 09 08 03 04 ...  highest supported version 0304             -> "13"
    //   => t13d3112h1
    let b = fixture("curl-http1.1");
    at(&b, 76, &[0x00, 0x3e]);
    at(&b, 142, &[0x01, 0x75, 0x00, 0x00]);
    at(&b, 196, b"\x00\x10\x00\x0b\x00\x09\x08http/1.1");
    at(&b, 269, &[0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04]);
    assert_eq!(&hello(&b, "curl-http1.1").ja4().ja4[..10], "t13d3112h1");

    // chromium-1.bin (Chromium headless, 2013 bytes), GREASE in four places:
    //   @76  00 20 9a 9a     32 bytes = 16 suites, the first GREASE (0x9a9a)      -> "15"
    //   @112 07 6b           1899 bytes = 19 extensions; the first (@114, 0x4a4a) and the
    //                        last (@2008, 0x5a5a) are GREASE                      -> "17"
    //   @1744 00 00          server_name "localhost"                              -> "d"
    //   @1957 00 2b 00 07 06 0a 0a 03 04 03 03  supported_versions: GREASE 0x0a0a skipped,
    //                        highest 0304                                         -> "13"
    //   @1981 00 10 00 0e 00 0c 02 "h2"  first ALPN value "h2"                    -> "h2"
    //   => t13d1517h2. (@1714 signature_algorithms starts with GREASE 0x9a9a: dropped from
    //   part c, per the spec's "ignore GREASE values anywhere".)
    let b = fixture("chromium-1");
    at(&b, 76, &[0x00, 0x20, 0x9a, 0x9a]);
    at(&b, 112, &[0x07, 0x6b, 0x4a, 0x4a]);
    at(&b, 2008, &[0x5a, 0x5a]);
    at(&b, 1744, &[0x00, 0x00]);
    at(
        &b,
        1957,
        &[
            0x00, 0x2b, 0x00, 0x07, 0x06, 0x0a, 0x0a, 0x03, 0x04, 0x03, 0x03,
        ],
    );
    at(&b, 1981, b"\x00\x10\x00\x0e\x00\x0c\x02h2");
    at(&b, 1714, &[0x00, 0x0d, 0x00, 0x1a, 0x00, 0x18, 0x9a, 0x9a]);
    let h = hello(&b, "chromium-1");
    assert_eq!(&h.ja4().ja4[..10], "t13d1517h2");
    assert!(
        !h.ja4().ja4_r.contains("9a9a"),
        "GREASE sigalg left in ja4_r"
    );
}
