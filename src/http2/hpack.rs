//! HPACK header compression (RFC 7541): a decoder for the header blocks that peers send us and
//! a stateless encoder for the header blocks we send.
//!
//! The decoder faces the internet: every read is bounds-checked, integers are capped, and no
//! input makes it panic. Strings that are sent raw are handed to the caller borrowed from the
//! block itself; Huffman-coded strings are decoded (four bits at a time, through a state machine
//! built at compile time from the code of Appendix B) into scratch buffers the decoder keeps
//! from one block to the next.
//!
//! The encoder never adds to the dynamic table and never Huffman-codes: it emits static-table
//! indexes where an entry matches and literals without indexing otherwise, so the peer's
//! decoder state never depends on ours.

use std::collections::VecDeque;
use std::fmt;

/// Why a header block could not be decoded: the connection answers COMPRESSION_ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The block ended inside a representation: in an integer, or before the end of a string.
    Truncated,
    /// An integer (index, string length or table size) was larger than this decoder accepts
    /// (`u32::MAX`), or was spread over more continuation octets than any such value needs.
    IntegerOverflow,
    /// An index was 0, or pointed past the end of the static and dynamic tables.
    BadIndex,
    /// A Huffman-coded string was invalid: it contained the EOS symbol, or it ended with
    /// padding that was longer than 7 bits or not all ones (RFC 7541 §5.2).
    Huffman,
    /// A dynamic table size update came after a field representation in the block: updates
    /// are allowed only at its start (RFC 7541 §4.2).
    TableSizeUpdate,
    /// A dynamic table size update asked for more than the SETTINGS_HEADER_TABLE_SIZE this
    /// side advertised (RFC 7541 §6.3).
    TableSizeTooLarge,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Truncated => "HPACK block truncated",
            DecodeError::IntegerOverflow => "HPACK integer too large",
            DecodeError::BadIndex => "HPACK index out of range",
            DecodeError::Huffman => "invalid HPACK Huffman string",
            DecodeError::TableSizeUpdate => "HPACK table size update after a field",
            DecodeError::TableSizeTooLarge => "HPACK table size update above the advertised limit",
        })
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------------------------
// Static table (RFC 7541 Appendix A)
// ---------------------------------------------------------------------------------------------

/// The static table: entry `i` (1-based in HPACK) is `STATIC_TABLE[i - 1]`.
static STATIC_TABLE: &[(&[u8], &[u8])] = &[
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The (1-based) index of the first static entry named `name`, if any. Entries of the same
/// name are adjacent in the table, so the others follow this one.
fn static_name_index(name: &[u8]) -> Option<usize> {
    let index = match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    };
    Some(index)
}

/// How the static table can represent (`name`, `value`).
enum StaticMatch {
    /// Entry `i` is exactly (`name`, `value`).
    Full(usize),
    /// Entry `i` has this name (the first such entry), none has this value.
    Name(usize),
    /// No entry has this name.
    None,
}

fn static_match(name: &[u8], value: &[u8]) -> StaticMatch {
    let Some(first) = static_name_index(name) else {
        return StaticMatch::None;
    };
    let mut index = first;
    while let Some(&(entry_name, entry_value)) = STATIC_TABLE.get(index - 1) {
        if entry_name != name {
            break;
        }
        if entry_value == value {
            return StaticMatch::Full(index);
        }
        index += 1;
    }
    StaticMatch::Name(first)
}

// ---------------------------------------------------------------------------------------------
// Huffman code (RFC 7541 Appendix B)
// ---------------------------------------------------------------------------------------------

/// (code, length in bits) of every symbol, 0..=255 then EOS (256); codes are right-aligned.
const HUFFMAN_CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),     // 0
    (0x7fffd8, 23),   // 1
    (0xfffffe2, 28),  // 2
    (0xfffffe3, 28),  // 3
    (0xfffffe4, 28),  // 4
    (0xfffffe5, 28),  // 5
    (0xfffffe6, 28),  // 6
    (0xfffffe7, 28),  // 7
    (0xfffffe8, 28),  // 8
    (0xffffea, 24),   // 9
    (0x3ffffffc, 30), // 10
    (0xfffffe9, 28),  // 11
    (0xfffffea, 28),  // 12
    (0x3ffffffd, 30), // 13
    (0xfffffeb, 28),  // 14
    (0xfffffec, 28),  // 15
    (0xfffffed, 28),  // 16
    (0xfffffee, 28),  // 17
    (0xfffffef, 28),  // 18
    (0xffffff0, 28),  // 19
    (0xffffff1, 28),  // 20
    (0xffffff2, 28),  // 21
    (0x3ffffffe, 30), // 22
    (0xffffff3, 28),  // 23
    (0xffffff4, 28),  // 24
    (0xffffff5, 28),  // 25
    (0xffffff6, 28),  // 26
    (0xffffff7, 28),  // 27
    (0xffffff8, 28),  // 28
    (0xffffff9, 28),  // 29
    (0xffffffa, 28),  // 30
    (0xffffffb, 28),  // 31
    (0x14, 6),        // 32 ' '
    (0x3f8, 10),      // 33 '!'
    (0x3f9, 10),      // 34 '"'
    (0xffa, 12),      // 35 '#'
    (0x1ff9, 13),     // 36 '$'
    (0x15, 6),        // 37 '%'
    (0xf8, 8),        // 38 '&'
    (0x7fa, 11),      // 39 '\''
    (0x3fa, 10),      // 40 '('
    (0x3fb, 10),      // 41 ')'
    (0xf9, 8),        // 42 '*'
    (0x7fb, 11),      // 43 '+'
    (0xfa, 8),        // 44 ','
    (0x16, 6),        // 45 '-'
    (0x17, 6),        // 46 '.'
    (0x18, 6),        // 47 '/'
    (0x0, 5),         // 48 '0'
    (0x1, 5),         // 49 '1'
    (0x2, 5),         // 50 '2'
    (0x19, 6),        // 51 '3'
    (0x1a, 6),        // 52 '4'
    (0x1b, 6),        // 53 '5'
    (0x1c, 6),        // 54 '6'
    (0x1d, 6),        // 55 '7'
    (0x1e, 6),        // 56 '8'
    (0x1f, 6),        // 57 '9'
    (0x5c, 7),        // 58 ':'
    (0xfb, 8),        // 59 ';'
    (0x7ffc, 15),     // 60 '<'
    (0x20, 6),        // 61 '='
    (0xffb, 12),      // 62 '>'
    (0x3fc, 10),      // 63 '?'
    (0x1ffa, 13),     // 64 '@'
    (0x21, 6),        // 65 'A'
    (0x5d, 7),        // 66 'B'
    (0x5e, 7),        // 67 'C'
    (0x5f, 7),        // 68 'D'
    (0x60, 7),        // 69 'E'
    (0x61, 7),        // 70 'F'
    (0x62, 7),        // 71 'G'
    (0x63, 7),        // 72 'H'
    (0x64, 7),        // 73 'I'
    (0x65, 7),        // 74 'J'
    (0x66, 7),        // 75 'K'
    (0x67, 7),        // 76 'L'
    (0x68, 7),        // 77 'M'
    (0x69, 7),        // 78 'N'
    (0x6a, 7),        // 79 'O'
    (0x6b, 7),        // 80 'P'
    (0x6c, 7),        // 81 'Q'
    (0x6d, 7),        // 82 'R'
    (0x6e, 7),        // 83 'S'
    (0x6f, 7),        // 84 'T'
    (0x70, 7),        // 85 'U'
    (0x71, 7),        // 86 'V'
    (0x72, 7),        // 87 'W'
    (0xfc, 8),        // 88 'X'
    (0x73, 7),        // 89 'Y'
    (0xfd, 8),        // 90 'Z'
    (0x1ffb, 13),     // 91 '['
    (0x7fff0, 19),    // 92 '\'
    (0x1ffc, 13),     // 93 ']'
    (0x3ffc, 14),     // 94 '^'
    (0x22, 6),        // 95 '_'
    (0x7ffd, 15),     // 96 '`'
    (0x3, 5),         // 97 'a'
    (0x23, 6),        // 98 'b'
    (0x4, 5),         // 99 'c'
    (0x24, 6),        // 100 'd'
    (0x5, 5),         // 101 'e'
    (0x25, 6),        // 102 'f'
    (0x26, 6),        // 103 'g'
    (0x27, 6),        // 104 'h'
    (0x6, 5),         // 105 'i'
    (0x74, 7),        // 106 'j'
    (0x75, 7),        // 107 'k'
    (0x28, 6),        // 108 'l'
    (0x29, 6),        // 109 'm'
    (0x2a, 6),        // 110 'n'
    (0x7, 5),         // 111 'o'
    (0x2b, 6),        // 112 'p'
    (0x76, 7),        // 113 'q'
    (0x2c, 6),        // 114 'r'
    (0x8, 5),         // 115 's'
    (0x9, 5),         // 116 't'
    (0x2d, 6),        // 117 'u'
    (0x77, 7),        // 118 'v'
    (0x78, 7),        // 119 'w'
    (0x79, 7),        // 120 'x'
    (0x7a, 7),        // 121 'y'
    (0x7b, 7),        // 122 'z'
    (0x7ffe, 15),     // 123 '{'
    (0x7fc, 11),      // 124 '|'
    (0x3ffd, 14),     // 125 '}'
    (0x1ffd, 13),     // 126 '~'
    (0xffffffc, 28),  // 127
    (0xfffe6, 20),    // 128
    (0x3fffd2, 22),   // 129
    (0xfffe7, 20),    // 130
    (0xfffe8, 20),    // 131
    (0x3fffd3, 22),   // 132
    (0x3fffd4, 22),   // 133
    (0x3fffd5, 22),   // 134
    (0x7fffd9, 23),   // 135
    (0x3fffd6, 22),   // 136
    (0x7fffda, 23),   // 137
    (0x7fffdb, 23),   // 138
    (0x7fffdc, 23),   // 139
    (0x7fffdd, 23),   // 140
    (0x7fffde, 23),   // 141
    (0xffffeb, 24),   // 142
    (0x7fffdf, 23),   // 143
    (0xffffec, 24),   // 144
    (0xffffed, 24),   // 145
    (0x3fffd7, 22),   // 146
    (0x7fffe0, 23),   // 147
    (0xffffee, 24),   // 148
    (0x7fffe1, 23),   // 149
    (0x7fffe2, 23),   // 150
    (0x7fffe3, 23),   // 151
    (0x7fffe4, 23),   // 152
    (0x1fffdc, 21),   // 153
    (0x3fffd8, 22),   // 154
    (0x7fffe5, 23),   // 155
    (0x3fffd9, 22),   // 156
    (0x7fffe6, 23),   // 157
    (0x7fffe7, 23),   // 158
    (0xffffef, 24),   // 159
    (0x3fffda, 22),   // 160
    (0x1fffdd, 21),   // 161
    (0xfffe9, 20),    // 162
    (0x3fffdb, 22),   // 163
    (0x3fffdc, 22),   // 164
    (0x7fffe8, 23),   // 165
    (0x7fffe9, 23),   // 166
    (0x1fffde, 21),   // 167
    (0x7fffea, 23),   // 168
    (0x3fffdd, 22),   // 169
    (0x3fffde, 22),   // 170
    (0xfffff0, 24),   // 171
    (0x1fffdf, 21),   // 172
    (0x3fffdf, 22),   // 173
    (0x7fffeb, 23),   // 174
    (0x7fffec, 23),   // 175
    (0x1fffe0, 21),   // 176
    (0x1fffe1, 21),   // 177
    (0x3fffe0, 22),   // 178
    (0x1fffe2, 21),   // 179
    (0x7fffed, 23),   // 180
    (0x3fffe1, 22),   // 181
    (0x7fffee, 23),   // 182
    (0x7fffef, 23),   // 183
    (0xfffea, 20),    // 184
    (0x3fffe2, 22),   // 185
    (0x3fffe3, 22),   // 186
    (0x3fffe4, 22),   // 187
    (0x7ffff0, 23),   // 188
    (0x3fffe5, 22),   // 189
    (0x3fffe6, 22),   // 190
    (0x7ffff1, 23),   // 191
    (0x3ffffe0, 26),  // 192
    (0x3ffffe1, 26),  // 193
    (0xfffeb, 20),    // 194
    (0x7fff1, 19),    // 195
    (0x3fffe7, 22),   // 196
    (0x7ffff2, 23),   // 197
    (0x3fffe8, 22),   // 198
    (0x1ffffec, 25),  // 199
    (0x3ffffe2, 26),  // 200
    (0x3ffffe3, 26),  // 201
    (0x3ffffe4, 26),  // 202
    (0x7ffffde, 27),  // 203
    (0x7ffffdf, 27),  // 204
    (0x3ffffe5, 26),  // 205
    (0xfffff1, 24),   // 206
    (0x1ffffed, 25),  // 207
    (0x7fff2, 19),    // 208
    (0x1fffe3, 21),   // 209
    (0x3ffffe6, 26),  // 210
    (0x7ffffe0, 27),  // 211
    (0x7ffffe1, 27),  // 212
    (0x3ffffe7, 26),  // 213
    (0x7ffffe2, 27),  // 214
    (0xfffff2, 24),   // 215
    (0x1fffe4, 21),   // 216
    (0x1fffe5, 21),   // 217
    (0x3ffffe8, 26),  // 218
    (0x3ffffe9, 26),  // 219
    (0xffffffd, 28),  // 220
    (0x7ffffe3, 27),  // 221
    (0x7ffffe4, 27),  // 222
    (0x7ffffe5, 27),  // 223
    (0xfffec, 20),    // 224
    (0xfffff3, 24),   // 225
    (0xfffed, 20),    // 226
    (0x1fffe6, 21),   // 227
    (0x3fffe9, 22),   // 228
    (0x1fffe7, 21),   // 229
    (0x1fffe8, 21),   // 230
    (0x7ffff3, 23),   // 231
    (0x3fffea, 22),   // 232
    (0x3fffeb, 22),   // 233
    (0x1ffffee, 25),  // 234
    (0x1ffffef, 25),  // 235
    (0xfffff4, 24),   // 236
    (0xfffff5, 24),   // 237
    (0x3ffffea, 26),  // 238
    (0x7ffff4, 23),   // 239
    (0x3ffffeb, 26),  // 240
    (0x7ffffe6, 27),  // 241
    (0x3ffffec, 26),  // 242
    (0x3ffffed, 26),  // 243
    (0x7ffffe7, 27),  // 244
    (0x7ffffe8, 27),  // 245
    (0x7ffffe9, 27),  // 246
    (0x7ffffea, 27),  // 247
    (0x7ffffeb, 27),  // 248
    (0xffffffe, 28),  // 249
    (0x7ffffec, 27),  // 250
    (0x7ffffed, 27),  // 251
    (0x7ffffee, 27),  // 252
    (0x7ffffef, 27),  // 253
    (0x7fffff0, 27),  // 254
    (0x3ffffee, 26),  // 255
    (0x3fffffff, 30), // 256 EOS
];

/// The EOS symbol's number.
const EOS: u16 = 256;
/// In the code tree built below, a child with this bit set is a leaf (the low bits are its
/// symbol); otherwise it is the number of an internal node (0 is the root, never a child, so
/// 0 also means "no child yet").
const LEAF: u16 = 0x8000;
/// A complete binary tree with 257 leaves has 256 internal nodes: a node number fits a `u8`.
const NODES: usize = 256;

/// `Step::flags`: the step completed a symbol, `Step::sym`.
const EMIT: u8 = 1;
/// `Step::flags`: the step decoded EOS (or walked off the tree, impossible with a complete
/// code): the string is invalid.
const FAIL: u8 = 2;

/// One transition of the decoding state machine: from an internal node, read four bits.
#[derive(Clone, Copy)]
struct Step {
    /// The internal node reached after the four bits (0 when they end exactly on a symbol).
    next: u8,
    /// The symbol completed by these bits, when `flags & EMIT`.
    sym: u8,
    /// `EMIT` and `FAIL` bits.
    flags: u8,
}

/// The decoding state machine: a state is an internal node of the code tree, i.e. the bits
/// read since the last complete symbol.
struct HuffmanDecodeTable {
    /// `steps[node][nibble]`.
    steps: [[Step; 16]; NODES],
    /// Whether the string may end at this node: at the root, or after at most 7 bits that are
    /// all ones (a prefix of EOS used as padding).
    accept: [bool; NODES],
}

/// Builds the state machine from `HUFFMAN_CODES` at compile time. A table that were not a
/// prefix code, or had a code shorter than 5 bits, would fail to compile.
const fn build_huffman_decode_table() -> HuffmanDecodeTable {
    // children[node][bit]
    let mut children = [[0u16; 2]; NODES];
    let mut depth = [0u8; NODES];
    let mut all_ones = [false; NODES];
    all_ones[0] = true;
    let mut nodes = 1usize;

    let mut sym = 0usize;
    while sym < HUFFMAN_CODES.len() {
        let (code, len) = HUFFMAN_CODES[sym];
        assert!(len >= 5 && len <= 30, "code length out of range");
        let mut node = 0usize;
        let mut shift = len as u32;
        while shift > 1 {
            shift -= 1;
            let bit = ((code >> shift) & 1) as usize;
            let child = children[node][bit];
            if child == 0 {
                assert!(nodes < NODES, "too many internal nodes");
                children[node][bit] = nodes as u16;
                depth[nodes] = depth[node] + 1;
                all_ones[nodes] = all_ones[node] && bit == 1;
                node = nodes;
                nodes += 1;
            } else {
                assert!(child & LEAF == 0, "not a prefix code");
                node = child as usize;
            }
        }
        let bit = (code & 1) as usize;
        assert!(children[node][bit] == 0, "not a prefix code");
        children[node][bit] = LEAF | sym as u16;
        sym += 1;
    }
    assert!(nodes == NODES, "the code is not complete");

    let mut steps = [[Step {
        next: 0,
        sym: 0,
        flags: FAIL,
    }; 16]; NODES];
    let mut accept = [false; NODES];
    let mut start = 0usize;
    while start < NODES {
        accept[start] = start == 0 || (all_ones[start] && depth[start] <= 7);
        let mut nibble = 0usize;
        while nibble < 16 {
            let mut node = start;
            let mut step = Step {
                next: 0,
                sym: 0,
                flags: 0,
            };
            let mut shift = 4;
            while shift > 0 {
                shift -= 1;
                let child = children[node][(nibble >> shift) & 1];
                if child & LEAF != 0 {
                    let s = child & !LEAF;
                    if s == EOS {
                        step.flags = FAIL;
                        break;
                    }
                    // Codes are at least 5 bits long: four bits complete at most one.
                    assert!(step.flags & EMIT == 0, "two symbols in one nibble");
                    step.flags = EMIT;
                    step.sym = s as u8;
                    node = 0;
                } else if child == 0 {
                    step.flags = FAIL;
                    break;
                } else {
                    node = child as usize;
                }
            }
            if step.flags & FAIL == 0 {
                step.next = node as u8;
            }
            steps[start][nibble] = step;
            nibble += 1;
        }
        start += 1;
    }
    HuffmanDecodeTable { steps, accept }
}

static HUFFMAN_DECODE: HuffmanDecodeTable = build_huffman_decode_table();

/// Decodes the Huffman-coded `src` into `dst` (cleared first; its capacity is reused).
fn huffman_decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), DecodeError> {
    // Every symbol takes at least 5 bits: `bound` symbols at most, plus one slot that a nibble
    // completing no symbol writes to (and does not keep), so that the loop has no branch on
    // whether a symbol was completed.
    let bound = src.len().saturating_mul(8) / 5;
    dst.clear();
    dst.resize(bound + 1, 0);
    let table = &HUFFMAN_DECODE;
    let mut len = 0usize;
    let mut state = 0u8;
    for &byte in src {
        // The indexes are a `u8` into 256 rows and a nibble (< 16) into 16 columns.
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = table.steps[usize::from(state)][usize::from(nibble)];
            if step.flags & FAIL != 0 {
                return Err(DecodeError::Huffman);
            }
            if let Some(slot) = dst.get_mut(len) {
                *slot = step.sym;
            }
            len += usize::from(step.flags & EMIT);
            state = step.next;
        }
    }
    dst.truncate(len);
    if table.accept[usize::from(state)] {
        Ok(())
    } else {
        Err(DecodeError::Huffman)
    }
}

// ---------------------------------------------------------------------------------------------
// Primitive types (RFC 7541 §5)
// ---------------------------------------------------------------------------------------------

/// The largest integer the decoder accepts. Larger indexes, lengths or sizes cannot be valid
/// anyway (a block is far shorter, tables far smaller).
const MAX_INTEGER: u64 = u32::MAX as u64;
/// Continuation octets beyond the prefix: 5 carry 35 bits, more than `MAX_INTEGER` needs.
const MAX_CONTINUATION_SHIFT: u32 = 28;

/// Reads an integer with an N-bit prefix (`prefix_bits` in 1..=8) at `*pos`, moving `*pos`
/// past it. The bits above the prefix in the first octet are ignored.
fn read_int(block: &[u8], pos: &mut usize, prefix_bits: u32) -> Result<usize, DecodeError> {
    let mask = ((1u16 << prefix_bits) - 1) as u8;
    let first = *block.get(*pos).ok_or(DecodeError::Truncated)?;
    *pos += 1;
    let prefix = first & mask;
    if prefix < mask {
        return Ok(usize::from(prefix));
    }
    let mut value = u64::from(mask);
    let mut shift = 0u32;
    loop {
        let byte = *block.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        value += u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > MAX_CONTINUATION_SHIFT {
            return Err(DecodeError::IntegerOverflow);
        }
    }
    if value > MAX_INTEGER {
        return Err(DecodeError::IntegerOverflow);
    }
    usize::try_from(value).map_err(|_| DecodeError::IntegerOverflow)
}

/// Reads a string literal at `*pos`: borrowed from `block` when raw, decoded into `scratch`
/// when Huffman-coded.
fn read_string<'a>(
    block: &'a [u8],
    pos: &mut usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], DecodeError> {
    let huffman = *block.get(*pos).ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = read_int(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(DecodeError::Truncated)?;
    let raw = block.get(*pos..end).ok_or(DecodeError::Truncated)?;
    *pos = end;
    if huffman {
        huffman_decode(raw, scratch)?;
        let decoded: &'a Vec<u8> = scratch;
        Ok(decoded)
    } else {
        Ok(raw)
    }
}

/// Appends `value` as an integer with an N-bit prefix (`prefix_bits` in 1..=8); `flags` are
/// the bits above the prefix in the first octet.
fn write_int(value: usize, prefix_bits: u32, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a raw (not Huffman-coded) string literal.
fn write_string(s: &[u8], out: &mut Vec<u8>) {
    write_int(s.len(), 7, 0, out);
    out.extend_from_slice(s);
}

// ---------------------------------------------------------------------------------------------
// Dynamic table (RFC 7541 §2.3.2, §4)
// ---------------------------------------------------------------------------------------------

/// The overhead counted per dynamic table entry (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// One dynamic table entry: name and value in one allocation.
#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        }
    }

    fn field(&self) -> (&[u8], &[u8]) {
        self.bytes
            .split_at_checked(self.name_len)
            .unwrap_or((&[], &[]))
    }

    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table, newest entry first.
#[derive(Debug)]
struct DynamicTable {
    entries: VecDeque<Entry>,
    /// Sum of the entries' sizes.
    size: usize,
    /// The current maximum size (the last size update, or the advertised limit).
    max_size: usize,
}

impl DynamicTable {
    fn new(max_size: usize) -> Self {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    /// Entry `i`, 0 being the newest.
    fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.entries.get(i).map(Entry::field)
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some(old) => self.size -= old.size(),
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    fn set_max_size(&mut self, max: usize) {
        self.max_size = max;
        self.evict_to(max);
    }

    /// Adds `entry` as the newest entry, evicting the oldest until it fits; `None` (the caller
    /// does not build an entry larger than the maximum) or one larger than the maximum empties
    /// the table (RFC 7541 §4.4). The entry is a copy made before anything is evicted, so its
    /// name may come from an entry that this eviction removes.
    fn insert(&mut self, entry: Option<Entry>) {
        match entry {
            Some(entry) if entry.size() <= self.max_size => {
                self.evict_to(self.max_size - entry.size());
                self.size += entry.size();
                self.entries.push_front(entry);
            }
            _ => {
                self.entries.clear();
                self.size = 0;
            }
        }
    }
}

/// The field at HPACK index `index` (1-based: static entries, then dynamic ones).
fn lookup(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    let i = index.checked_sub(1).ok_or(DecodeError::BadIndex)?;
    match STATIC_TABLE.get(i) {
        Some(&field) => Ok(field),
        None => table
            .get(i - STATIC_TABLE.len())
            .ok_or(DecodeError::BadIndex),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/// Scratch buffers larger than this are given back after a block, so that one huge
/// Huffman-coded string does not pin its memory for the life of the connection.
const SCRATCH_KEEP: usize = 64 * 1024;

/// An HPACK decoder: the dynamic table of one connection's header blocks from the peer, and
/// scratch space for Huffman-coded strings.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The SETTINGS_HEADER_TABLE_SIZE this side advertised: no size update may exceed it.
    max_table_size: usize,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Decoder {
    /// `max_table_size`: the SETTINGS_HEADER_TABLE_SIZE this side advertised (4096 default).
    pub fn new(max_table_size: usize) -> Self {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_table_size,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION payloads joined), calling
    /// `field(name, value)` for each field in order. Name and value are borrowed for the call
    /// only. Dynamic table size updates are allowed only at the start of the block and must be
    /// <= `max_table_size`. On error the connection is finished (no need to keep the table
    /// consistent after an error).
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let Decoder {
            table,
            max_table_size,
            name_buf,
            value_buf,
        } = self;
        let mut pos = 0usize;
        let mut at_start = true;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed header field (§6.1).
                let index = read_int(block, &mut pos, 7)?;
                let (name, value) = lookup(table, index)?;
                field(name, value);
                at_start = false;
            } else if first & 0x40 != 0 {
                // Literal header field with incremental indexing (§6.2.1).
                let index = read_int(block, &mut pos, 6)?;
                let name = if index == 0 {
                    read_string(block, &mut pos, name_buf)?
                } else {
                    lookup(table, index)?.0
                };
                let value = read_string(block, &mut pos, value_buf)?;
                field(name, value);
                let size = name.len() + value.len() + ENTRY_OVERHEAD;
                let entry = (size <= table.max_size).then(|| Entry::new(name, value));
                table.insert(entry);
                at_start = false;
            } else if first & 0x20 != 0 {
                // Dynamic table size update (§6.3).
                if !at_start {
                    return Err(DecodeError::TableSizeUpdate);
                }
                let size = read_int(block, &mut pos, 5)?;
                if size > *max_table_size {
                    return Err(DecodeError::TableSizeTooLarge);
                }
                table.set_max_size(size);
            } else {
                // Literal header field without indexing (§6.2.2) or never indexed (§6.2.3).
                let index = read_int(block, &mut pos, 4)?;
                let name = if index == 0 {
                    read_string(block, &mut pos, name_buf)?
                } else {
                    lookup(table, index)?.0
                };
                let value = read_string(block, &mut pos, value_buf)?;
                field(name, value);
                at_start = false;
            }
        }
        for buf in [name_buf, value_buf] {
            if buf.capacity() > SCRATCH_KEEP {
                buf.clear();
                buf.shrink_to(SCRATCH_KEEP);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/// Stateless encoder: never adds to the dynamic table, never Huffman-codes.
#[derive(Debug, Default)]
pub struct Encoder {
    /// Whether the first block's size update to 0 has been written.
    size_update_sent: bool,
}

impl Encoder {
    /// A new encoder, for one connection: its first block will start with a size update.
    pub fn new() -> Self {
        Encoder {
            size_update_sent: false,
        }
    }

    /// Appends one header block's start: on the very first call of this encoder, a dynamic
    /// table size update to 0 (so that the peer's decoder never waits for one, whatever table
    /// size it sets).
    pub fn begin_block(&mut self, out: &mut Vec<u8>) {
        if !self.size_update_sent {
            write_int(0, 5, 0x20, out);
            self.size_update_sent = true;
        }
    }

    /// Appends one field: the static table index if (name, value) is a full static entry
    /// (e.g. ":status" "200"); otherwise "literal without indexing" with the static name index
    /// when the name is in the static table, else with a literal name. Strings raw (H bit 0).
    pub fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        match static_match(name, value) {
            StaticMatch::Full(index) => write_int(index, 7, 0x80, out),
            StaticMatch::Name(index) => {
                write_int(index, 4, 0, out);
                write_string(value, out);
            }
            StaticMatch::None => {
                out.push(0);
                write_string(name, out);
                write_string(value, out);
            }
        }
    }

    /// Convenience for ":status": `status(200, out)` uses the static entries 8-14 when they
    /// match, else a literal with name index 8 and the three-digit value (the code's decimal
    /// digits, without padding, should a code outside 100..=999 be given).
    pub fn status(&mut self, code: u16, out: &mut Vec<u8>) {
        let index: u8 = match code {
            200 => 8,
            204 => 9,
            206 => 10,
            304 => 11,
            400 => 12,
            404 => 13,
            500 => 14,
            _ => 0,
        };
        if index != 0 {
            out.push(0x80 | index);
            return;
        }
        let mut digits = [0u8; 5];
        let mut start = digits.len();
        let mut rest = code;
        loop {
            start -= 1;
            if let Some(d) = digits.get_mut(start) {
                *d = b'0' + (rest % 10) as u8;
            }
            rest /= 10;
            if rest == 0 || start == 0 {
                break;
            }
        }
        write_int(8, 4, 0, out);
        write_string(digits.get(start..).unwrap_or(&[]), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    /// Bytes from an RFC hex dump ("8286 8441 ..."), whitespace ignored.
    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(digits.len() % 2 == 0, "odd hex length: {text}");
        digits
            .chunks(2)
            .map(|pair| {
                let pair = std::str::from_utf8(pair).expect("ascii");
                u8::from_str_radix(pair, 16).expect("hex digit")
            })
            .collect()
    }

    fn owned(list: &[(&str, &str)]) -> Fields {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn decode_all(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, DecodeError> {
        let mut out = Vec::new();
        decoder.decode(block, |n, v| out.push((n.to_vec(), v.to_vec())))?;
        Ok(out)
    }

    /// The dynamic table, newest first, and its size; checks the size bookkeeping.
    fn table_of(decoder: &Decoder) -> (Fields, usize) {
        let table = &decoder.table;
        let entries: Fields = table
            .entries
            .iter()
            .map(|e| {
                let (n, v) = e.field();
                (n.to_vec(), v.to_vec())
            })
            .collect();
        let sum: usize = entries.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        assert_eq!(sum, table.size, "size bookkeeping");
        assert!(table.size <= table.max_size);
        assert!(table.max_size <= decoder.max_table_size);
        (entries, table.size)
    }

    /// Test-only Huffman encoder: concatenates codes, pads with ones.
    fn pack(codes: impl IntoIterator<Item = (u32, u8)>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut acc = 0u64;
        let mut bits = 0u32;
        for (code, len) in codes {
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
            acc &= (1u64 << bits) - 1;
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
        }
        out
    }

    fn huffman_encode(s: &[u8]) -> Vec<u8> {
        pack(s.iter().map(|&b| HUFFMAN_CODES[usize::from(b)]))
    }

    fn huffman(src: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        huffman_decode(src, &mut out)?;
        Ok(out)
    }

    // ---- static and Huffman tables ----

    #[test]
    fn static_table_has_61_entries_and_name_index_agrees() {
        assert_eq!(STATIC_TABLE.len(), 61);
        for (i, &(name, _)) in STATIC_TABLE.iter().enumerate() {
            let first = STATIC_TABLE
                .iter()
                .position(|&(n, _)| n == name)
                .expect("present")
                + 1;
            assert_eq!(
                static_name_index(name),
                Some(first),
                "{}",
                String::from_utf8_lossy(name)
            );
            // Entries of one name are adjacent (static_match relies on it).
            assert!(STATIC_TABLE[first - 1..=i].iter().all(|&(n, _)| n == name));
        }
        assert_eq!(static_name_index(b"x-custom"), None);
        assert_eq!(static_name_index(b""), None);
    }

    #[test]
    fn huffman_table_is_the_canonical_code_of_its_lengths() {
        // Complete: the Kraft sum is exactly 1.
        let kraft: u64 = HUFFMAN_CODES
            .iter()
            .map(|&(_, len)| 1u64 << (30 - len))
            .sum();
        assert_eq!(kraft, 1u64 << 30);
        // Canonical (RFC 7541 Appendix B): codes in (length, symbol) order count up.
        let mut order: Vec<usize> = (0..HUFFMAN_CODES.len()).collect();
        order.sort_by_key(|&s| (HUFFMAN_CODES[s].1, s));
        let mut code = 0u32;
        let mut len = HUFFMAN_CODES[order[0]].1;
        for (n, &sym) in order.iter().enumerate() {
            let (want, want_len) = HUFFMAN_CODES[sym];
            if n > 0 {
                code += 1;
                code <<= want_len - len;
                len = want_len;
            }
            assert_eq!(code, want, "symbol {sym}");
        }
        assert_eq!(HUFFMAN_CODES[256], (0x3fff_ffff, 30));
    }

    #[test]
    fn huffman_decodes_every_symbol() {
        for sym in 0..=255u8 {
            assert_eq!(
                huffman(&huffman_encode(&[sym])),
                Ok(vec![sym]),
                "symbol {sym}"
            );
            let three = [sym, b'a', sym];
            assert_eq!(
                huffman(&huffman_encode(&three)),
                Ok(three.to_vec()),
                "symbol {sym}"
            );
        }
        assert_eq!(huffman(&[]), Ok(vec![]));
        // "00000000": 40 bits, no padding at all.
        assert_eq!(huffman(&[0; 5]), Ok(b"00000000".to_vec()));
    }

    #[test]
    fn huffman_rejects_eos_and_bad_padding() {
        // EOS alone, and EOS after a symbol.
        assert_eq!(
            huffman(&[0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Huffman)
        );
        assert_eq!(
            huffman(&pack([(0x3, 5), (0x3fff_ffff, 30)])),
            Err(DecodeError::Huffman)
        );
        assert_eq!(
            huffman(&pack([(0x3fff_ffff, 30), (0x3, 5), (0x3, 5)])),
            Err(DecodeError::Huffman)
        );
        // 8 bits of padding (an empty string), 11 bits after 'a'.
        assert_eq!(huffman(&[0xff]), Err(DecodeError::Huffman));
        assert_eq!(huffman(&[0x1f, 0xff]), Err(DecodeError::Huffman));
        // 'a' padded with 1s is fine; padded with 0s, or a mix, is not.
        assert_eq!(huffman(&[0x1f]), Ok(b"a".to_vec()));
        assert_eq!(huffman(&[0x18]), Err(DecodeError::Huffman));
        assert_eq!(huffman(&[0x1d]), Err(DecodeError::Huffman));
        assert_eq!(huffman(&[0x1e]), Err(DecodeError::Huffman));
        // 7 bits of padding is the most allowed: '0' (5 bits) + 'a' (5) + 6 ones.
        assert_eq!(huffman(&pack([(0x0, 5), (0x3, 5)])), Ok(b"0a".to_vec()));
        // A string cut inside a long code: its start is not all ones... or is too long.
        let full = huffman_encode(&[200]);
        assert_eq!(huffman(&full[..2]), Err(DecodeError::Huffman));
    }

    // ---- integers (C.1) ----

    #[test]
    fn c1_integers() {
        // C.1.1: 10 with a 5-bit prefix (the top bits are someone else's).
        let mut pos = 0;
        assert_eq!(read_int(&[0xea], &mut pos, 5), Ok(10));
        assert_eq!(pos, 1);
        let mut out = Vec::new();
        write_int(10, 5, 0, &mut out);
        assert_eq!(out, [0x0a]);
        // C.1.2: 1337 with a 5-bit prefix.
        let mut pos = 0;
        assert_eq!(read_int(&[0x1f, 0x9a, 0x0a], &mut pos, 5), Ok(1337));
        assert_eq!(pos, 3);
        out.clear();
        write_int(1337, 5, 0, &mut out);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        // C.1.3: 42 at an octet boundary.
        let mut pos = 0;
        assert_eq!(read_int(&[0x2a], &mut pos, 8), Ok(42));
        out.clear();
        write_int(42, 8, 0, &mut out);
        assert_eq!(out, [0x2a]);
    }

    #[test]
    fn integers_reject_overflow_and_truncation() {
        let read = |bytes: &[u8], n| read_int(bytes, &mut 0, n);
        assert_eq!(read(&[0x1f], 5), Err(DecodeError::Truncated));
        assert_eq!(read(&[0x1f, 0x80], 5), Err(DecodeError::Truncated));
        assert_eq!(read(&[], 5), Err(DecodeError::Truncated));
        // Six continuation octets, even of zeros.
        assert_eq!(
            read(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 5),
            Err(DecodeError::IntegerOverflow)
        );
        // Five octets, but more than u32::MAX.
        assert_eq!(
            read(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 8),
            Err(DecodeError::IntegerOverflow)
        );
        // Exactly u32::MAX is accepted.
        let mut out = Vec::new();
        write_int(u32::MAX as usize, 8, 0, &mut out);
        assert_eq!(read(&out, 8), Ok(u32::MAX as usize));
        out.clear();
        write_int(u32::MAX as usize + 1, 8, 0, &mut out);
        assert_eq!(read(&out, 8), Err(DecodeError::IntegerOverflow));
    }

    // ---- C.2: independent representations ----

    #[test]
    fn c2_representations() {
        let mut d = Decoder::new(4096);
        let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(
            decode_all(&mut d, &block),
            Ok(owned(&[("custom-key", "custom-header")]))
        );
        assert_eq!(
            table_of(&d),
            (owned(&[("custom-key", "custom-header")]), 55)
        );

        let mut d = Decoder::new(4096);
        let block = hex("040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(
            decode_all(&mut d, &block),
            Ok(owned(&[(":path", "/sample/path")]))
        );
        assert_eq!(table_of(&d), (vec![], 0));

        let mut d = Decoder::new(4096);
        let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(
            decode_all(&mut d, &block),
            Ok(owned(&[("password", "secret")]))
        );
        assert_eq!(table_of(&d), (vec![], 0));

        let mut d = Decoder::new(4096);
        assert_eq!(
            decode_all(&mut d, &hex("82")),
            Ok(owned(&[(":method", "GET")]))
        );
        assert_eq!(table_of(&d), (vec![], 0));
    }

    // ---- C.3 to C.6: sequences of blocks on one decoder ----

    struct Block {
        hex: &'static str,
        fields: &'static [(&'static str, &'static str)],
        table: &'static [(&'static str, &'static str)],
        size: usize,
    }

    fn run(max_table_size: usize, blocks: &[Block]) {
        let mut d = Decoder::new(max_table_size);
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(
                decode_all(&mut d, &hex(b.hex)),
                Ok(owned(b.fields)),
                "block {i}"
            );
            assert_eq!(
                table_of(&d),
                (owned(b.table), b.size),
                "table after block {i}"
            );
        }
    }

    const REQ1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const REQ2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const REQ3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    const REQ_TABLE1: &[(&str, &str)] = &[(":authority", "www.example.com")];
    const REQ_TABLE2: &[(&str, &str)] = &[
        ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ];
    const REQ_TABLE3: &[(&str, &str)] = &[
        ("custom-key", "custom-value"),
        ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ];

    const C3: [&str; 3] = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    const C4: [&str; 3] = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];

    fn requests(hexes: [&'static str; 3]) -> [Block; 3] {
        [
            Block {
                hex: hexes[0],
                fields: REQ1,
                table: REQ_TABLE1,
                size: 57,
            },
            Block {
                hex: hexes[1],
                fields: REQ2,
                table: REQ_TABLE2,
                size: 110,
            },
            Block {
                hex: hexes[2],
                fields: REQ3,
                table: REQ_TABLE3,
                size: 164,
            },
        ]
    }

    #[test]
    fn c3_requests_without_huffman() {
        run(4096, &requests(C3));
    }

    #[test]
    fn c4_requests_with_huffman() {
        run(4096, &requests(C4));
    }

    const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOCATION: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

    const RESP1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", DATE1),
        ("location", LOCATION),
    ];
    const RESP2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", DATE1),
        ("location", LOCATION),
    ];
    const RESP3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", DATE2),
        ("location", LOCATION),
        ("content-encoding", "gzip"),
        ("set-cookie", COOKIE),
    ];
    const RESP_TABLE1: &[(&str, &str)] = &[
        ("location", LOCATION),
        ("date", DATE1),
        ("cache-control", "private"),
        (":status", "302"),
    ];
    const RESP_TABLE2: &[(&str, &str)] = &[
        (":status", "307"),
        ("location", LOCATION),
        ("date", DATE1),
        ("cache-control", "private"),
    ];
    const RESP_TABLE3: &[(&str, &str)] = &[
        ("set-cookie", COOKIE),
        ("content-encoding", "gzip"),
        ("date", DATE2),
    ];

    const C5: [&str; 3] = [
        "4803 3330 3258 0770 7269 7661 7465 611d
         4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768
         7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420
         3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153
         444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61
         6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ];
    const C6: [&str; 3] = [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe
         9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8
         e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595
         040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b
         3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];

    fn responses(hexes: [&'static str; 3]) -> [Block; 3] {
        [
            Block {
                hex: hexes[0],
                fields: RESP1,
                table: RESP_TABLE1,
                size: 222,
            },
            Block {
                hex: hexes[1],
                fields: RESP2,
                table: RESP_TABLE2,
                size: 222,
            },
            Block {
                hex: hexes[2],
                fields: RESP3,
                table: RESP_TABLE3,
                size: 215,
            },
        ]
    }

    #[test]
    fn c5_responses_without_huffman() {
        run(256, &responses(C5));
    }

    #[test]
    fn c6_responses_with_huffman() {
        run(256, &responses(C6));
    }

    #[test]
    fn raw_literals_are_borrowed_from_the_block() {
        let block = hex(C3[0]);
        let range = block.as_ptr_range();
        let mut d = Decoder::new(4096);
        let mut seen = 0;
        d.decode(&block, |name, value| {
            if name == b":authority" {
                assert!(range.contains(&value.as_ptr()));
                seen += 1;
            }
        })
        .expect("valid block");
        assert_eq!(seen, 1);
    }

    #[test]
    fn huffman_scratch_is_reused() {
        let mut d = Decoder::new(4096);
        // Literal without indexing, :authority, Huffman-coded value.
        let block = hex("018c f1e3 c2e5 f23a 6ba0 ab90 f4ff");
        assert_eq!(
            decode_all(&mut d, &block),
            Ok(owned(&[(":authority", "www.example.com")]))
        );
        let (ptr, cap) = (d.value_buf.as_ptr(), d.value_buf.capacity());
        assert_eq!(
            decode_all(&mut d, &block),
            Ok(owned(&[(":authority", "www.example.com")]))
        );
        assert_eq!((d.value_buf.as_ptr(), d.value_buf.capacity()), (ptr, cap));
    }

    // ---- dynamic table behaviour ----

    #[test]
    fn size_updates_evict_and_must_come_first() {
        let mut d = Decoder::new(4096);
        for b in C3 {
            decode_all(&mut d, &hex(b)).expect("C.3");
        }
        // Two updates at the start are allowed: 110 drops the oldest, 4096 drops nothing.
        let mut block = Vec::new();
        write_int(110, 5, 0x20, &mut block);
        write_int(4096, 5, 0x20, &mut block);
        block.push(0xbe);
        assert_eq!(
            decode_all(&mut d, &block),
            Ok(owned(&[("custom-key", "custom-value")]))
        );
        assert_eq!(
            table_of(&d),
            (
                owned(&[
                    ("custom-key", "custom-value"),
                    ("cache-control", "no-cache")
                ]),
                107
            )
        );
        assert_eq!(d.table.max_size, 4096);
        // Update to 0 empties the table: index 62 is then out of range.
        assert_eq!(decode_all(&mut d, &[0x20]), Ok(vec![]));
        assert_eq!(table_of(&d), (vec![], 0));
        assert_eq!(decode_all(&mut d, &[0xbe]), Err(DecodeError::BadIndex));
        // An update after a field.
        let mut d = Decoder::new(4096);
        assert_eq!(
            decode_all(&mut d, &[0x82, 0x20]),
            Err(DecodeError::TableSizeUpdate)
        );
        // An update above the advertised size, even by one.
        let mut block = Vec::new();
        write_int(4097, 5, 0x20, &mut block);
        assert_eq!(
            decode_all(&mut Decoder::new(4096), &block),
            Err(DecodeError::TableSizeTooLarge)
        );
        assert_eq!(
            decode_all(&mut Decoder::new(0), &[0x21]),
            Err(DecodeError::TableSizeTooLarge)
        );
        assert_eq!(
            decode_all(&mut Decoder::new(0), &[0x20, 0x82]),
            Ok(owned(&[(":method", "GET")]))
        );
    }

    #[test]
    fn entry_larger_than_the_table_empties_it() {
        let mut d = Decoder::new(100);
        let small = hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        decode_all(&mut d, &small).expect("valid");
        assert_eq!(table_of(&d), (owned(&[("custom-key", "custom-value")]), 54));
        // Name index 62 (custom-key) and a 59-byte value: 10 + 59 + 32 = 101 > 100.
        let mut big = vec![0x7e, 59];
        big.extend_from_slice(&[b'v'; 59]);
        let want = vec![(b"custom-key".to_vec(), vec![b'v'; 59])];
        assert_eq!(decode_all(&mut d, &big), Ok(want));
        assert_eq!(table_of(&d), (vec![], 0));
        // Exactly the maximum fits.
        let mut exact = vec![0x40, 10];
        exact.extend_from_slice(b"custom-key");
        exact.push(58);
        exact.extend_from_slice(&[b'w'; 58]);
        decode_all(&mut d, &exact).expect("valid");
        assert_eq!(table_of(&d).1, 100);
    }

    #[test]
    fn new_entry_may_name_the_entry_it_evicts() {
        let mut d = Decoder::new(60);
        let first = hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        decode_all(&mut d, &first).expect("valid");
        // Name index 62, value "x": 43 bytes, fits only once the 54-byte entry is gone.
        assert_eq!(
            decode_all(&mut d, &[0x7e, 0x01, b'x']),
            Ok(owned(&[("custom-key", "x")]))
        );
        assert_eq!(table_of(&d), (owned(&[("custom-key", "x")]), 43));
    }

    // ---- malformed blocks ----

    #[test]
    fn malformed_blocks_are_rejected() {
        let check = |block: &[u8], want: DecodeError| {
            let mut d = Decoder::new(4096);
            assert_eq!(decode_all(&mut d, block), Err(want), "{block:02x?}");
        };
        check(&[0x80], DecodeError::BadIndex);
        check(&[0xbe], DecodeError::BadIndex);
        check(&[0x7f, 0x00, 0x01, b'x'], DecodeError::BadIndex);
        check(&[0x0f, 0x30, 0x01, b'x'], DecodeError::BadIndex);
        check(&[0xff, 0xff, 0xff, 0xff, 0x0f], DecodeError::BadIndex);
        check(
            &[0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            DecodeError::IntegerOverflow,
        );
        check(
            &[0x40, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x7f],
            DecodeError::IntegerOverflow,
        );
        check(&[0xff], DecodeError::Truncated);
        check(&[0x40], DecodeError::Truncated);
        check(&[0x40, 0x05, b'a', b'b'], DecodeError::Truncated);
        check(&[0x40, 0x01, b'a'], DecodeError::Truncated);
        check(&[0x04], DecodeError::Truncated);
        check(&[0x04, 0x03, b'a'], DecodeError::Truncated);
        check(
            &[0x04, 0x7f, 0xff, 0xff, 0xff, 0x0f],
            DecodeError::Truncated,
        );
        check(&[0x04, 0x81, 0xff], DecodeError::Huffman);
        check(&[0x00, 0x81, 0x18, 0x00], DecodeError::Huffman);
        assert_eq!(decode_all(&mut Decoder::new(4096), &[]), Ok(vec![]));
        assert!(!DecodeError::Huffman.to_string().is_empty());
    }

    // ---- encoder ----

    #[test]
    fn encoder_basics() {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        e.begin_block(&mut out);
        assert_eq!(out, [0x20]);
        e.begin_block(&mut out);
        assert_eq!(out, [0x20], "only the first block carries the size update");

        let encode = |name: &str, value: &str| {
            let mut out = Vec::new();
            Encoder::default().field(name.as_bytes(), value.as_bytes(), &mut out);
            out
        };
        assert_eq!(encode(":status", "200"), [0x88]);
        assert_eq!(encode(":method", "POST"), [0x83]);
        assert_eq!(encode("accept-encoding", "gzip, deflate"), [0x90]);
        assert_eq!(encode("accept-charset", ""), [0x8f]);
        assert_eq!(encode(":path", "/a"), [0x04, 0x02, b'/', b'a']);
        let mut want = vec![0x0f, 0x10, 0x09];
        want.extend_from_slice(b"text/html");
        assert_eq!(encode("content-type", "text/html"), want);
        let mut want = vec![0x00, 0x08];
        want.extend_from_slice(b"x-custom");
        want.extend_from_slice(&[0x01, b'v']);
        assert_eq!(encode("x-custom", "v"), want);

        let status = |code| {
            let mut out = Vec::new();
            Encoder::new().status(code, &mut out);
            out
        };
        assert_eq!(status(200), [0x88]);
        assert_eq!(status(500), [0x8e]);
        assert_eq!(status(302), [0x08, 0x03, b'3', b'0', b'2']);
        assert_eq!(status(0), [0x08, 0x01, b'0']);
        assert_eq!(status(65535), [0x08, 0x05, b'6', b'5', b'5', b'3', b'5']);
    }

    #[test]
    fn every_status_round_trips() {
        let mut e = Encoder::new();
        let mut d = Decoder::new(4096);
        e.begin_block(&mut Vec::new());
        for code in 100..=999u16 {
            let mut out = Vec::new();
            e.begin_block(&mut out);
            e.status(code, &mut out);
            let want = owned(&[(":status", &code.to_string())]);
            assert_eq!(decode_all(&mut d, &out), Ok(want));
            let indexed = [200, 204, 206, 304, 400, 404, 500].contains(&code);
            assert_eq!(out.len(), if indexed { 1 } else { 5 }, "{code}");
        }
    }

    // ---- properties ----

    fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::sample::select(STATIC_TABLE.to_vec()).prop_map(|(n, _)| n.to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::sample::select(STATIC_TABLE.to_vec()).prop_map(|(_, v)| v.to_vec()),
            prop::collection::vec(any::<u8>(), 0..200),
        ]
    }

    fn field_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        prop_oneof![
            prop::sample::select(STATIC_TABLE.to_vec()).prop_map(|(n, v)| (n.to_vec(), v.to_vec())),
            (name_strategy(), value_strategy()),
        ]
    }

    /// Bytes biased towards representation prefixes and integer edges.
    fn wire_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            any::<u8>(),
            prop::sample::select(vec![
                0x00, 0x0f, 0x10, 0x1f, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xbe, 0xbf, 0xff
            ]),
        ]
    }

    /// Every RFC example block, to mutate.
    fn example_blocks() -> Vec<Vec<u8>> {
        C3.iter()
            .chain(&C4)
            .chain(&C5)
            .chain(&C6)
            .map(|h| hex(h))
            .collect()
    }

    proptest! {
        #[test]
        fn huffman_round_trip(s in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(huffman(&huffman_encode(&s)), Ok(s));
        }

        #[test]
        fn integer_round_trip(
            value in 0..=u32::MAX as usize,
            prefix in 1..=8u32,
            flags in any::<u8>(),
        ) {
            let flags = flags & !((1u16 << prefix) - 1) as u8;
            let mut out = Vec::new();
            write_int(value, prefix, flags, &mut out);
            let mut pos = 0;
            prop_assert_eq!(read_int(&out, &mut pos, prefix), Ok(value));
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn encoder_round_trip(
            blocks in prop::collection::vec(prop::collection::vec(field_strategy(), 0..12), 1..4),
            max_table_size in 0..8192usize,
        ) {
            let mut e = Encoder::new();
            let mut d = Decoder::new(max_table_size);
            for (i, fields) in blocks.iter().enumerate() {
                let mut out = Vec::new();
                e.begin_block(&mut out);
                prop_assert_eq!(out.first() == Some(&0x20), i == 0);
                for (n, v) in fields {
                    e.field(n, v, &mut out);
                }
                prop_assert_eq!(&decode_all(&mut d, &out), &Ok(fields.clone()));
                prop_assert_eq!(table_of(&d).1, 0);
            }
        }

        #[test]
        fn arbitrary_blocks_never_panic(
            blocks in prop::collection::vec(prop::collection::vec(wire_byte(), 0..300), 1..4),
            max_table_size in 0..5000usize,
        ) {
            let mut d = Decoder::new(max_table_size);
            for block in &blocks {
                if d.decode(block, |_, _| {}).is_err() {
                    break;
                }
                table_of(&d);
            }
        }

        #[test]
        fn mutated_examples_never_panic(
            which in 0..12usize,
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
            max_table_size in prop::sample::select(vec![0usize, 64, 256, 4096]),
        ) {
            let mut block = example_blocks().swap_remove(which);
            for (at, byte) in edits {
                let i = at.index(block.len());
                block[i] = byte;
            }
            block.truncate(cut.index(block.len() + 1));
            let mut d = Decoder::new(max_table_size);
            if d.decode(&block, |_, _| {}).is_ok() {
                table_of(&d);
            }
        }
    }
}
