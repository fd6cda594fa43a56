//! Unit tests on hand-built ClientHellos: spec worked examples, hand-computed JA3, the
//! extension shuffle, and every error outcome of `parse_client_hello`.
//! The captured vectors are in `tests/fingerprint_vectors.rs`.

use super::*;

/// An extension as (type, body).
type Ext = (u16, Vec<u8>);

fn be16(v: usize) -> [u8; 2] {
    u16::try_from(v).expect("test value fits u16").to_be_bytes()
}

fn sni(host: &str) -> Ext {
    // RFC 6066 §3: server_name_list, one host_name entry.
    let mut entry = vec![0u8];
    entry.extend(be16(host.len()));
    entry.extend(host.as_bytes());
    let mut body = be16(entry.len()).to_vec();
    body.extend(entry);
    (0x0000, body)
}

fn alpn(names: &[&[u8]]) -> Ext {
    let mut list = Vec::new();
    for n in names {
        list.push(u8::try_from(n.len()).expect("short name"));
        list.extend(*n);
    }
    let mut body = be16(list.len()).to_vec();
    body.extend(list);
    (0x0010, body)
}

fn u16_list(ty: u16, values: &[u16]) -> Ext {
    let mut body = be16(values.len() * 2).to_vec();
    for v in values {
        body.extend(v.to_be_bytes());
    }
    (ty, body)
}

fn versions(values: &[u16]) -> Ext {
    let mut body = vec![u8::try_from(values.len() * 2).expect("short list")];
    for v in values {
        body.extend(v.to_be_bytes());
    }
    (0x002b, body)
}

fn opaque(ty: u16, body: &[u8]) -> Ext {
    (ty, body.to_vec())
}

/// A ClientHello handshake message (header included), RFC 8446 §4.1.2.
fn hello_msg(version: u16, ciphers: &[u16], exts: Option<&[Ext]>) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend([0x11; 32]); // random
    body.push(32);
    body.extend([0x22; 32]); // legacy_session_id
    body.extend(be16(ciphers.len() * 2));
    for c in ciphers {
        body.extend(c.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null
    if let Some(exts) = exts {
        let mut list = Vec::new();
        for (ty, data) in exts {
            list.extend(ty.to_be_bytes());
            list.extend(be16(data.len()));
            list.extend(data);
        }
        body.extend(be16(list.len()));
        body.extend(list);
    }
    let len = u32::try_from(body.len()).expect("small").to_be_bytes();
    let mut msg = vec![1, len[1], len[2], len[3]];
    msg.extend(body);
    msg
}

/// `msg` in handshake records of at most `chunk` bytes each.
fn records(msg: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in msg.chunks(chunk) {
        out.extend([22, 3, 1]);
        out.extend(be16(part.len()));
        out.extend(part);
    }
    out
}

fn parse(buf: &[u8]) -> (ClientHello, usize) {
    match parse_client_hello(buf) {
        Ok(Parsed::Complete { hello, consumed }) => (hello, consumed),
        other => panic!("expected a complete hello, got {other:?}"),
    }
}

const SPEC_CIPHERS: [u16; 16] = [
    0x5a5a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
    0x009c, 0x009d, 0x002f, 0x0035,
];

/// The hello behind the JA4 spec's worked example (technical_details/JA4.md, "Example" and
/// "Raw Output"): its ciphers, extensions in the JA4_ro order, and signature algorithms, with
/// GREASE added where Chrome puts it. Bodies not named by the spec are plausible fillers.
fn spec_example_exts() -> Vec<Ext> {
    vec![
        opaque(0x3a3a, &[]),
        opaque(0x001b, &[2, 0, 2]),
        sni("example.com"),
        opaque(0x0033, &[0, 0x26, 0x7a, 0x7a, 0, 1, 0, 0, 0x1d, 0, 0x20]),
        alpn(&[b"h2", b"http/1.1"]),
        opaque(0x4469, &[0, 3, 2, b'h', b'2']),
        opaque(0x0017, &[]),
        opaque(0x002d, &[1, 1]),
        u16_list(
            0x000d,
            &[
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
        ),
        opaque(0x0005, &[1, 0, 0, 0, 0]),
        opaque(0x0023, &[]),
        opaque(0x0012, &[]),
        versions(&[0x6a6a, 0x0304, 0x0303]),
        opaque(0xff01, &[0]),
        (0x000b, vec![1, 0]),
        u16_list(0x000a, &[0x8a8a, 0x001d, 0x0017, 0x0018]),
        opaque(0x0015, &[0; 40]),
        opaque(0xdada, &[0]),
    ]
}

#[test]
fn ja4_spec_worked_example() {
    let msg = hello_msg(0x0303, &SPEC_CIPHERS, Some(&spec_example_exts()));
    let (hello, _) = parse(&records(&msg, usize::MAX));
    let ja4 = hello.ja4();
    assert_eq!(ja4.ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
    assert_eq!(
        ja4.ja4_r,
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
         0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
         0403,0804,0401,0503,0805,0501,0806,0601"
    );
    assert_eq!(
        ja4.ja4_ro,
        "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_\
         001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_\
         0403,0804,0401,0503,0805,0501,0806,0601"
    );
    assert_eq!(ja4.ja4_o, "t13d1516h2_acb858a92679_18f69afefd3d");
    assert_eq!(hello.tls_version_label(), "13");
    assert_eq!(hello.sni.as_deref(), Some("example.com"));
    assert_eq!(hello.alpn_first(), Some(&b"h2"[..]));
    assert_eq!(hello.alpn.len(), 2);
    assert_eq!(hello.supported_versions, [0x6a6a, 0x0304, 0x0303]);
    assert_eq!(hello.supported_groups, [0x8a8a, 0x001d, 0x0017, 0x0018]);
    assert_eq!(hello.ec_point_formats, [0]);
    // Types as sent, GREASE included.
    assert_eq!(hello.extensions.first(), Some(&0x3a3a));
    assert_eq!(hello.extensions.last(), Some(&0xdada));
    assert_eq!(hello.cipher_suites, SPEC_CIPHERS);

    // JA3 of the same hello; the MD5 was computed independently (`printf ... | md5sum`).
    let ja3 = hello.ja3();
    assert_eq!(
        ja3.full,
        "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
         27-0-51-16-17513-23-45-13-5-35-18-43-65281-11-10-21,29-23-24,0"
    );
    assert_eq!(ja3.hash, "c000e2caf3a25423f9de6c8a4b12a975");
}

#[test]
fn ja3_readme_examples() {
    // github.com/salesforce/ja3 README: both example strings and their MD5s.
    let ciphers = [47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4];
    let exts = [sni("a"), u16_list(10, &[23, 24, 25]), (11, vec![1, 0])];
    let (hello, _) = parse(&records(&hello_msg(0x0301, &ciphers, Some(&exts)), 9999));
    let ja3 = hello.ja3();
    assert_eq!(
        ja3.full,
        "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    );
    assert_eq!(ja3.hash, "ada70206e40642a3e4461f35503241d5");

    // No extension block at all (RFC 5246 §7.4.1.2 allows it): empty trailing fields.
    let ciphers = [4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99];
    let (hello, _) = parse(&records(&hello_msg(0x0301, &ciphers, None), 9999));
    assert!(hello.extensions.is_empty());
    let ja3 = hello.ja3();
    assert_eq!(ja3.full, "769,4-5-10-9-100-98-3-6-19-18-99,,,");
    assert_eq!(ja3.hash, "de350869b8c85de67a350c8d186f11e6");
    // ...and its JA4: no SNI, no extensions, no ALPN; part c is all zeros in both forms.
    // Part b hashes (sha256sum) of the sorted and the original cipher lists.
    let ja4 = hello.ja4();
    assert_eq!(ja4.ja4, "t10i110000_3609b414f052_000000000000");
    assert_eq!(ja4.ja4_o, "t10i110000_9ae8bfd03023_000000000000");
    assert_eq!(
        ja4.ja4_r,
        "t10i110000_0003,0004,0005,0006,0009,000a,0012,0013,0062,0063,0064_"
    );
    assert_eq!(
        ja4.ja4_ro,
        "t10i110000_0004,0005,000a,0009,0064,0062,0003,0006,0013,0012,0063_"
    );
}

#[test]
fn hand_built_hello_with_grease() {
    let exts = [
        opaque(0x1a1a, &[]),
        sni("a.example"),
        u16_list(10, &[0x2a2a, 29, 23]),
        (11, vec![1, 0]),
        alpn(&[b"h2"]),
    ];
    let (hello, _) = parse(&records(
        &hello_msg(0x0303, &[0x0a0a, 0x1301, 0xc02b], Some(&exts)),
        64,
    ));
    // Expected values computed in the shell:
    //   printf '771,4865-49195,0-10-11-16,29-23,0' | md5sum
    //   printf '1301,c02b' | sha256sum; printf '000a,000b' | sha256sum
    //   printf '0000,000a,000b,0010' | sha256sum
    let ja3 = hello.ja3();
    assert_eq!(ja3.full, "771,4865-49195,0-10-11-16,29-23,0");
    assert_eq!(ja3.hash, "53962ec19dcdb5203d1ae1d50be37d3d");
    let ja4 = hello.ja4();
    assert_eq!(ja4.ja4, "t12d0204h2_777cda164f4b_33a13ba74d1c");
    assert_eq!(ja4.ja4_r, "t12d0204h2_1301,c02b_000a,000b");
    assert_eq!(ja4.ja4_ro, "t12d0204h2_1301,c02b_0000,000a,000b,0010");
    assert_eq!(ja4.ja4_o, "t12d0204h2_777cda164f4b_9df5fff9b10e");
}

/// xorshift64: a tiny deterministic PRNG for the shuffle.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn chrome_like_extension_shuffle_keeps_ja4_and_changes_ja3() {
    let base_exts = spec_example_exts();
    let (base, _) = parse(&records(
        &hello_msg(0x0303, &SPEC_CIPHERS, Some(&base_exts)),
        512,
    ));
    let (base_ja3, base_ja4) = (base.ja3(), base.ja4());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..50 {
        // Fisher–Yates over the extensions, as Chrome does per connection.
        let mut exts = base_exts.clone();
        for i in (1..exts.len()).rev() {
            let j = usize::try_from(xorshift(&mut seed) % (i as u64 + 1)).expect("small");
            exts.swap(i, j);
        }
        let (hello, _) = parse(&records(
            &hello_msg(0x0303, &SPEC_CIPHERS, Some(&exts)),
            512,
        ));
        let (ja3, ja4) = (hello.ja3(), hello.ja4());
        assert_eq!(ja4.ja4, base_ja4.ja4);
        assert_eq!(ja4.ja4_r, base_ja4.ja4_r);
        if hello.extensions != base.extensions {
            assert_ne!(ja3.hash, base_ja3.hash);
            assert_ne!(ja4.ja4_ro, base_ja4.ja4_ro);
        }
    }
}

#[test]
fn version_from_supported_versions_else_legacy() {
    let with = [versions(&[0x0a0a, 0x0303, 0x0304, 0x0302])];
    let (hello, _) = parse(&records(&hello_msg(0x0303, &[0x1301], Some(&with)), 999));
    assert_eq!(hello.tls_version_label(), "13");
    // Present but only GREASE: fall back to legacy_version.
    let grease_only = [versions(&[0x0a0a])];
    let (hello, _) = parse(&records(
        &hello_msg(0x0302, &[0x1301], Some(&grease_only)),
        999,
    ));
    assert_eq!(hello.tls_version_label(), "11");
    let (hello, _) = parse(&records(&hello_msg(0x0300, &[0x0a], None), 999));
    assert_eq!(hello.tls_version_label(), "s3");
}

#[test]
fn odd_extension_bodies_keep_their_types() {
    // A server_name body that lies about its length, an ALPN list with a truncated name,
    // and an unknown type: all are kept in order; the broken bodies just yield nothing.
    let exts = [
        opaque(0x0000, &[0, 9, 0]),
        opaque(0x0010, &[0, 4, 2, b'h', b'2', 5]),
        opaque(0x1234, &[1, 2, 3]),
        opaque(0x000d, &[0, 3, 4, 3, 8]),
    ];
    let (hello, _) = parse(&records(&hello_msg(0x0303, &[0x1301], Some(&exts)), 999));
    assert_eq!(hello.extensions, [0x0000, 0x0010, 0x1234, 0x000d]);
    assert_eq!(hello.sni, None);
    assert_eq!(hello.alpn, [b"h2".to_vec()]);
    assert_eq!(hello.signature_algorithms, [0x0403]);
    // SNI extension present means 'd', even without a readable name.
    assert!(hello.ja4().ja4.starts_with("t12d0104h2_"));
}

/// `msg` in handshake records of `chunk` bytes, the last of the `MAX_HELLO_RECORDS` taking
/// whatever is left (the record cap allows no more).
fn records_capped(msg: &[u8], chunk: usize) -> Vec<u8> {
    let head = msg.len().min(chunk * (MAX_HELLO_RECORDS - 1));
    let mut out = records(&msg[..head], chunk);
    if head < msg.len() {
        out.extend(records(&msg[head..], usize::MAX));
    }
    out
}

#[test]
fn fragmented_hello_and_trailing_bytes() {
    let msg = hello_msg(0x0303, &SPEC_CIPHERS, Some(&spec_example_exts()));
    let one = records(&msg, usize::MAX);
    let (want, consumed) = parse(&one);
    assert_eq!(consumed, one.len());
    for chunk in [1, 2, 3, 4, 5, 100] {
        // Tiny records split the handshake header itself; `records_capped` keeps the count
        // within MAX_HELLO_RECORDS.
        let mut buf = records_capped(&msg, chunk);
        let len = buf.len();
        buf.extend([23, 3, 3, 0, 1, 0]); // an application-data record after the hello
        let (hello, consumed) = parse(&buf);
        assert_eq!(hello, want, "chunk {chunk}");
        assert_eq!(consumed, len);
    }
}

#[test]
fn hello_over_more_than_max_records_is_rejected() {
    const TOO_MANY: HelloError = HelloError::Malformed("too many records");
    let msg = hello_msg(0x0303, &SPEC_CIPHERS, Some(&spec_example_exts()));
    let (want, _) = parse(&records(&msg, usize::MAX));
    assert!(msg.len() > MAX_HELLO_RECORDS);

    // Exactly MAX_HELLO_RECORDS records (63 of 1 byte, then the rest): still a hello.
    let buf = records_capped(&msg, 1);
    assert_eq!(buf.len(), msg.len() + 5 * MAX_HELLO_RECORDS);
    assert_eq!(parse(&buf), (want, buf.len()));

    // All in 1-byte records: rejected as soon as the first byte of record 65 is in, and
    // `Incomplete` up to then (every record before it is consistent).
    let ones = records(&msg, 1);
    let cap_end = MAX_HELLO_RECORDS * 6;
    assert_eq!(parse_client_hello(&ones[..cap_end]), Ok(Parsed::Incomplete));
    assert_eq!(parse_client_hello(&ones[..=cap_end]), Err(TOO_MANY));
    assert_eq!(parse_client_hello(&ones), Err(TOO_MANY));
    assert_eq!(TOO_MANY.reason(), "malformed");

    // The case that was quadratic: a ~60 KiB hello (a padding extension) in 1-byte records,
    // re-parsed after every 1-byte read as the server does. It ends at the same 385th byte,
    // after 385 scans of at most 65 records each, instead of running to `TooLarge` 10,922
    // records later with every scan walking all the records before it.
    let big = hello_msg(0x0303, &[0x1301], Some(&[opaque(0x0015, &[0; 60_000])]));
    let buf = records(&big, 1);
    let first_answer = (0..=buf.len())
        .find(|&n| parse_client_hello(&buf[..n]) != Ok(Parsed::Incomplete))
        .expect("an answer");
    assert_eq!(first_answer, cap_end + 1);
    assert_eq!(parse_client_hello(&buf[..first_answer]), Err(TOO_MANY));
}

#[test]
fn error_outcomes() {
    use HelloError::*;
    let cases: [(&[u8], HelloError, &str); 9] = [
        (&[0x00, 0xff, 0x13, 0x37, 0x42], NotTls, "not_tls"),
        (b"GET / HTTP/1.1\r\n", PlainHttp, "plain_http"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", PlainHttp, "plain_http"),
        (b"POST /v1/messages HTTP/1.1\r\n", PlainHttp, "plain_http"),
        (&[0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15], SslV2, "sslv2"),
        // A ServerHello (type 2) where the ClientHello should be.
        (
            &[22, 3, 3, 0, 6, 2, 0, 0, 2, 3, 3],
            NotClientHello,
            "not_client_hello",
        ),
        // A handshake length of 64 KiB cannot fit in MAX_HELLO_BYTES with its record header.
        (&[22, 3, 1, 0, 4, 1, 1, 0, 0], TooLarge, "too_large"),
        (
            &[22, 3, 1, 0x48, 0x01, 1],
            Malformed("record longer than 2^14+2048"),
            "malformed",
        ),
        (
            &[22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3],
            Malformed("truncated random"),
            "malformed",
        ),
    ];
    for (input, want, reason) in cases {
        let got = parse_client_hello(input);
        assert_eq!(got, Err(want.clone()), "{input:02x?}");
        assert_eq!(want.reason(), reason);
        assert!(!want.to_string().is_empty());
    }
    assert_eq!(parse_client_hello(b""), Ok(Parsed::Incomplete));
    assert_eq!(parse_client_hello(b"GE"), Ok(Parsed::Incomplete));
    assert_eq!(parse_client_hello(&[0x80, 0x2e]), Ok(Parsed::Incomplete));
}

#[test]
fn too_large_is_decided_from_lengths() {
    // The largest body that fits in one record's worth of headers: 5 + 4 + body = 64 KiB.
    let max_body = MAX_HELLO_BYTES - 9;
    let len = u32::try_from(max_body).expect("small").to_be_bytes();
    let header = [22, 3, 1, 0x40, 0x00, 1, len[1], len[2], len[3]];
    assert_eq!(parse_client_hello(&header), Ok(Parsed::Incomplete));
    let len = u32::try_from(max_body + 1).expect("small").to_be_bytes();
    let header = [22, 3, 1, 0x40, 0x00, 1, len[1], len[2], len[3]];
    assert_eq!(parse_client_hello(&header), Err(HelloError::TooLarge));

    // Fitting the body needs more records than 64 KiB allows: TooLarge once a record header
    // says so, before its payload arrives.
    let len = u32::try_from(max_body).expect("small").to_be_bytes();
    let mut msg = vec![1, len[1], len[2], len[3]];
    msg.resize(4 + max_body, 0);
    let buf = records(&msg, 16384);
    let err_at = (0..buf.len())
        .find(|&n| parse_client_hello(&buf[..n]).is_err())
        .expect("decided before the end");
    assert_eq!(
        parse_client_hello(&buf[..err_at]),
        Err(HelloError::TooLarge)
    );
    assert!(err_at < MAX_HELLO_BYTES);
}

#[test]
fn malformed_message_bodies() {
    use HelloError::Malformed;
    let good = hello_msg(0x0303, &[0x1301], Some(&[sni("x")]));
    // Cut the extension list short but keep the framing consistent.
    let mut cut = good.clone();
    cut.truncate(cut.len() - 1);
    let n = cut.len() - 4;
    cut[3] = u8::try_from(n & 0xff).expect("byte");
    assert_eq!(
        parse_client_hello(&records(&cut, 999)),
        Err(Malformed("truncated extensions"))
    );
    // Bytes after the extension block.
    let mut extra = good.clone();
    extra.push(0);
    extra[3] += 1;
    assert_eq!(
        parse_client_hello(&records(&extra, 999)),
        Err(Malformed("bytes after extensions"))
    );
    // Odd cipher_suites length: version, random, empty session id, then 00 01 ff.
    let mut body = vec![3, 3];
    body.extend([0; 32]);
    body.extend([0, 0, 1, 0xff]);
    let mut odd = vec![1, 0, 0, u8::try_from(body.len()).expect("byte")];
    odd.extend(body);
    assert_eq!(
        parse_client_hello(&records(&odd, 999)),
        Err(Malformed("odd cipher_suites length"))
    );
}

#[test]
fn every_truncation_of_the_body_names_its_field() {
    // The body of `hello_msg` with an empty cipher list: version 2, random 32, session id
    // 1 + 32, cipher_suites 2 + 2, compression 1 + 1, then the extension block.
    let good = hello_msg(0x0303, &[0x1301], Some(&[sni("example.com")]));
    let body = &good[4..];
    for cut in 0..body.len() {
        let len = u32::try_from(cut).expect("small").to_be_bytes();
        let mut msg = vec![1, len[1], len[2], len[3]];
        msg.extend(&body[..cut]);
        let got = parse_client_hello(&records(&msg, 999));
        let want = match cut {
            0..=1 => "truncated legacy_version",
            2..=33 => "truncated random",
            34..=66 => "truncated legacy_session_id",
            67..=70 => "truncated cipher_suites",
            71..=72 => "truncated compression_methods",
            // Ending right after compression_methods: no extensions, a valid TLS 1.2 hello.
            73 => {
                let (hello, _) = parse(&records(&msg, 999));
                assert!(hello.extensions.is_empty());
                continue;
            }
            _ => "truncated extensions",
        };
        assert_eq!(got, Err(HelloError::Malformed(want)), "body cut at {cut}");
    }
    // A session id longer than RFC 8446 allows.
    let mut long_sid = good.clone();
    long_sid[4 + 34] = 33;
    assert_eq!(
        parse_client_hello(&records(&long_sid, 999)),
        Err(HelloError::Malformed("legacy_session_id longer than 32"))
    );
    // Extension framing: a lone byte, then a header whose length runs past the list.
    for (tail, want) in [
        (&[0x00][..], "truncated extension header"),
        (&[0x00, 0x17, 0x00][..], "truncated extension data"),
        (&[0x00, 0x17, 0x00, 0x01][..], "truncated extension data"),
    ] {
        let mut body = good[4..4 + 73].to_vec();
        body.extend(be16(tail.len()));
        body.extend(tail);
        let len = u32::try_from(body.len()).expect("small").to_be_bytes();
        let mut msg = vec![1, len[1], len[2], len[3]];
        msg.extend(body);
        assert_eq!(
            parse_client_hello(&records(&msg, 999)),
            Err(HelloError::Malformed(want)),
            "{tail:02x?}"
        );
    }
}

#[test]
fn bodies_tls_parser_rejects_leave_their_fields_empty() {
    // supported_versions reaches tls-parser only when its length byte describes the rest of
    // the body; otherwise (and for a 2-byte body, which tls-parser would read as the
    // ServerHello form) the list stays empty and the version falls back to legacy_version.
    for (body, want) in [
        (&[4, 3, 4, 3, 3][..], &[0x0304, 0x0303][..]),
        (&[0][..], &[][..]),
        (&[1, 3][..], &[][..]),
        (&[2, 3][..], &[][..]),
        (&[4, 3, 4][..], &[][..]),
        (&[2, 3, 4, 3, 3][..], &[][..]),
        (&[3, 3, 4, 3][..], &[][..]),
        (&[][..], &[][..]),
    ] {
        let exts = [opaque(0x002b, body), opaque(0x1234, &[])];
        let (hello, _) = parse(&records(&hello_msg(0x0303, &[0x1301], Some(&exts)), 999));
        assert_eq!(hello.extensions, [0x002b, 0x1234], "{body:02x?}");
        assert_eq!(hello.supported_versions, want, "{body:02x?}");
    }
    // An odd-length supported_groups list, and a point-format list longer than its body.
    let exts = [
        opaque(0x000a, &[0, 3, 0, 0x1d, 0]),
        opaque(0x000b, &[2, 0]),
        u16_list(0x000d, &[0x0403]),
    ];
    let (hello, _) = parse(&records(&hello_msg(0x0303, &[0x1301], Some(&exts)), 999));
    assert_eq!(hello.extensions, [0x000a, 0x000b, 0x000d]);
    assert!(hello.supported_groups.is_empty());
    assert!(hello.ec_point_formats.is_empty());
    assert_eq!(hello.signature_algorithms, [0x0403]);
    // A repeated extension: the first one wins, both count.
    let exts = [sni("first.example"), sni("second.example")];
    let (hello, _) = parse(&records(&hello_msg(0x0303, &[0x1301], Some(&exts)), 999));
    assert_eq!(hello.sni.as_deref(), Some("first.example"));
    assert_eq!(hello.extensions, [0, 0]);
}
