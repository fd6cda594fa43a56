use super::*;
use proptest::prelude::*;

fn head(text: &str) -> Result<Parsed, WireError> {
    parse_response(&mut BytesMut::from(text), false)
}

fn final_head(text: &str) -> (ResponseHead, usize) {
    match head(text) {
        Ok(Parsed::Head { head, len }) => (head, len),
        other => panic!("{text:?}: {other:?}"),
    }
}

const NO_EDITS: HeadEdits<'static> = HeadEdits {
    fixed: &[],
    fields: &[],
    add: &[],
    drop: &|_| false,
};

#[test]
fn request_head_is_origin_form_with_host_first() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("client.example"));
    h.insert("x-a", HeaderValue::from_static("1"));
    h.append("x-a", HeaderValue::from_static("2"));
    let mut out = Vec::new();
    let host = HeaderValue::from_static("up:8080");
    encode_head(
        &mut out,
        &Method::GET,
        "/v1/x?y=1",
        &host,
        &h,
        &NO_EDITS,
        RequestFraming::None,
    );
    assert_eq!(
        String::from_utf8(out).expect("utf8"),
        "GET /v1/x?y=1 HTTP/1.1\r\nhost: up:8080\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
    );
}

#[test]
fn edits_drop_client_headers_and_add_the_proxys() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    let xff = HeaderName::from_static("x-forwarded-for");
    let ip = HeaderValue::from_static("192.0.2.1");
    let drop = |n: &HeaderName| n == "x-forwarded-for";
    let fp_name = HeaderName::from_static("x-fp");
    let edits = HeadEdits {
        fixed: b"x-fixed: f\r\n",
        fields: &[(&fp_name, b"h1_0123".as_slice())],
        add: &[(xff, ip)],
        drop: &drop,
    };
    let mut out = Vec::new();
    let host = HeaderValue::from_static("up");
    encode_head(
        &mut out,
        &Method::GET,
        "/",
        &host,
        &h,
        &edits,
        RequestFraming::None,
    );
    assert_eq!(
        String::from_utf8(out).expect("utf8"),
        "GET / HTTP/1.1\r\nhost: up\r\naccept: */*\r\nx-fixed: f\r\nx-fp: h1_0123\r\n\
         x-forwarded-for: 192.0.2.1\r\n\r\n"
    );
}

#[test]
fn request_framing_headers() {
    let host = HeaderValue::from_static("up");
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
    let mut out = Vec::new();
    encode_head(
        &mut out,
        &Method::POST,
        "/",
        &host,
        &h,
        &NO_EDITS,
        RequestFraming::Chunked,
    );
    let text = String::from_utf8(out).expect("utf8");
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(!text.contains("content-length"), "{text}");

    let mut out = Vec::new();
    encode_head(
        &mut out,
        &Method::POST,
        "/",
        &host,
        &HeaderMap::new(),
        &NO_EDITS,
        RequestFraming::Length(7),
    );
    assert!(String::from_utf8(out)
        .expect("utf8")
        .contains("content-length: 7\r\n"));

    let mut out = Vec::new();
    encode_head(
        &mut out,
        &Method::POST,
        "/",
        &host,
        &h,
        &NO_EDITS,
        RequestFraming::Length(5),
    );
    let text = String::from_utf8(out).expect("utf8");
    assert_eq!(text.matches("content-length").count(), 1, "{text}");
}

#[test]
fn response_fields_are_kept_as_sent_and_framing_names_match_in_any_case() {
    let (h, _) = final_head(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: a=1\r\n\
         X-Upstream: caf\u{e9}\r\nset-cookie: b=2\r\nX-Empty: \r\nCONTENT-LENGTH: 2\r\n\
         Connection: Close\r\n\r\n{}",
    );
    assert_eq!(h.headers["x-empty"], "");
    assert_eq!(h.headers["content-type"], "application/json");
    let cookies: Vec<_> = h.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(h.headers["x-upstream"].as_bytes(), "caf\u{e9}".as_bytes());
    assert_eq!(h.headers.len(), 7);
    assert_eq!(h.framing, ResponseFraming::Length(2));
    assert!(!h.reusable, "Connection: Close");
}

#[test]
fn framing_follows_rfc_9112_section_6_3() {
    let (h, len) = final_head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nbody");
    assert_eq!(h.framing, ResponseFraming::Length(12));
    assert!(h.reusable);
    assert_eq!(len, 39);

    let (h, _) = final_head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
    assert_eq!(h.framing, ResponseFraming::Chunked);
    assert!(h.reusable);

    // A length beside chunked is ignored, and the connection is not trusted again.
    let (h, _) =
        final_head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
    assert_eq!(h.framing, ResponseFraming::Chunked);
    assert!(!h.reusable);

    let (h, _) = final_head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
    assert_eq!(h.framing, ResponseFraming::Close);
    assert!(!h.reusable);

    let (h, _) = final_head("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(h.framing, ResponseFraming::Close);
    assert!(!h.reusable);

    for status in ["204 No Content", "304 Not Modified"] {
        let (h, _) = final_head(&format!("HTTP/1.1 {status}\r\ncontent-length: 9\r\n\r\n"));
        assert_eq!(h.framing, ResponseFraming::Empty, "{status}");
    }
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"[..]);
    match parse_response(&mut buf, true) {
        Ok(Parsed::Head { head, .. }) => assert_eq!(head.framing, ResponseFraming::Empty),
        other => panic!("{other:?}"),
    }

    let (h, _) = final_head("HTTP/1.1 200 OK\r\ncontent-length: 4, 4\r\nconnection: close\r\n\r\n");
    assert_eq!(h.framing, ResponseFraming::Length(4));
    assert!(!h.reusable, "connection: close");

    let (h, _) = final_head("HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\n");
    assert_eq!(h.version, Version::HTTP_10);
    assert!(!h.reusable, "HTTP/1.0");
}

#[test]
fn bad_heads_are_errors_not_guesses() {
    for text in [
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1 2\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
    ] {
        assert!(head(text).is_err(), "{text:?} was accepted");
    }
    let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
    assert_eq!(
        head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).err(),
        Some(WireError::Head("too many headers"))
    );
    let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
    assert_eq!(head(&big).err(), Some(WireError::HeadTooLarge));
    assert!(matches!(
        head("HTTP/1.1 200 OK\r\nx: 1\r\n"),
        Ok(Parsed::Partial)
    ));
}

#[test]
fn interim_responses_are_skipped_by_length() {
    let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nbody";
    let mut buf = BytesMut::from(text);
    match parse_response(&mut buf, false) {
        Ok(Parsed::Interim(n)) => assert_eq!(n, 25),
        other => panic!("{other:?}"),
    }
    match parse_response(&mut buf, false) {
        Ok(Parsed::Head { head, len }) => {
            assert_eq!(head.status, StatusCode::OK);
            assert_eq!(len, 38);
        }
        other => panic!("{other:?}"),
    }
    // Each head was taken off the buffer; what follows it stays.
    assert_eq!(&buf[..], b"body");
}

fn decode_all(wire: &[u8], splits: &[usize]) -> Result<(Vec<u8>, bool, usize), WireError> {
    let mut dec = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (wire.len() + 1)).collect();
    cuts.push(wire.len());
    cuts.sort_unstable();
    for cut in cuts {
        buf.extend_from_slice(&wire[fed..cut.max(fed)]);
        fed = cut.max(fed);
        let mut g = Gathered::default();
        dec.decode(&mut buf, &mut g)?;
        if let Some(b) = g.take() {
            out.extend_from_slice(&b);
        }
    }
    Ok((out, dec.is_done(), buf.len()))
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let wire = b"5;name=v\r\nhello\r\n7 ; x\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
    let (out, done, left) = decode_all(wire, &[]).expect("decode");
    assert_eq!(out, b"hello, world");
    assert!(done);
    assert_eq!(left, 4, "bytes after the body stay in the buffer");
}

#[test]
fn bad_chunked_bodies_are_errors() {
    for wire in [
        &b"5\r\nhelloXX0\r\n\r\n"[..],
        b"z\r\n",
        b"\r\n",
        b"5 x\r\nhello\r\n",
        b"11111111111111111\r\n",
        b"5\nhello\r\n",
    ] {
        assert!(
            decode_all(wire, &[]).is_err(),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    let long = vec![b'1'; MAX_LINE + 10];
    assert!(decode_all(&long, &[]).is_err());
}

#[test]
fn ready_chunks_come_out_as_one_piece() {
    let mut wire = Vec::new();
    for i in 0..50 {
        let event = format!("data: {i}\n\n");
        chunk_start(&mut wire, event.len());
        wire.extend_from_slice(event.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(CHUNKED_END);
    let mut dec = ChunkedDecoder::default();
    let mut buf = BytesMut::from(&wire[..]);
    let mut g = Gathered::default();
    dec.decode(&mut buf, &mut g).expect("decode");
    let all = g.take().expect("data");
    assert!(all.starts_with(b"data: 0\n\n") && all.ends_with(b"data: 49\n\n"));
    assert!(g.take().is_none());
    assert!(dec.is_done());
}

proptest! {
    /// Whatever the chunk sizes and however the bytes arrive, the data comes out whole.
    #[test]
    fn chunked_round_trip(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..12),
        splits in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for p in &pieces {
            chunk_start(&mut wire, p.len());
            wire.extend_from_slice(p);
            wire.extend_from_slice(b"\r\n");
            want.extend_from_slice(p);
        }
        wire.extend_from_slice(CHUNKED_END);
        let (out, done, left) = decode_all(&wire, &splits).expect("decode");
        prop_assert_eq!(out, want);
        prop_assert!(done);
        prop_assert_eq!(left, 0);
    }

    /// Arbitrary bytes never panic the head parser or the chunked decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse_response(&mut BytesMut::from(&bytes[..]), false);
        let _ = decode_all(&bytes, &[7, 100]);
    }
}
