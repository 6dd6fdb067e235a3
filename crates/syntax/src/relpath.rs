//! Exact names of files: a text form of any path that round-trips to the same bytes.
//!
//! An index stores paths as text (unit paths, file entries, repository roots), and a client names
//! files as text (`UpdateFiles`). A Unix file name is bytes, not necessarily UTF-8; a lossy
//! conversion maps `bad\xffname.py` and `bad\xfename.py` to the same `bad\u{fffd}name.py`, so one
//! of them becomes unsearchable, a refresh sees a change every time, and naming the lossy text
//! names neither file. The text form here is exact instead:
//!
//! * a valid UTF-8 run is kept as it is, except that a backslash is written `\\`;
//! * every byte that is not part of valid UTF-8 is written `\xHH` (two lowercase hex digits).
//!
//! So a name that is valid UTF-8 and holds no backslash (nearly every name) is its own text, as
//! before; `/` is never escaped, so the components of a path are those of its text. Only the
//! *canonical* text decodes ([`decode_os`]): `\x` of a byte that is valid UTF-8 (`\x61` for
//! `a`, `\x2f` for `/`, `\x00`), any other escape and a lone backslash are refused, so one file
//! has exactly one text and no text smuggles a separator or a NUL into a name.
//!
//! Path globs of a search match this text; `\` escapes in a glob, so a glob matches a byte
//! `\xff` of a name as `\\xff`.
//!
//! On other platforms (file names are Unicode there, and `\` is a separator on Windows) the
//! text is the name itself.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

/// The exact text of `name` (see the module docs); borrowed when it is plain UTF-8 without a
/// backslash.
pub fn encode_os(name: &OsStr) -> Cow<'_, str> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        encode_bytes(name.as_bytes())
    }
    #[cfg(not(unix))]
    {
        name.to_string_lossy()
    }
}

/// The exact text of a byte string (see the module docs).
pub fn encode_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.contains('\\')
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    Cow::Owned(out)
}

/// The bytes of a canonical text made by [`encode_bytes`]; `None` for any other text (a bad or
/// needless escape, a lone backslash).
pub fn decode_bytes(text: &str) -> Option<Cow<'_, [u8]>> {
    if !text.contains('\\') {
        return Some(Cow::Borrowed(text.as_bytes()));
    }
    let src = text.as_bytes();
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        if src[i] != b'\\' {
            out.push(src[i]);
            i += 1;
            continue;
        }
        match src.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = text.get(i + 2..i + 4)?;
                if !hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    // Canonical only: an escaped byte must be one the encoder escapes.
    (encode_bytes(&out) == text).then_some(Cow::Owned(out))
}

/// The name a canonical text stands for ([`decode_bytes`]); `None` for any other text, and off
/// Unix for any text with a backslash.
pub fn decode_os(text: &str) -> Option<OsString> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        decode_bytes(text).map(|b| OsString::from_vec(b.into_owned()))
    }
    #[cfg(not(unix))]
    {
        (!text.contains('\\')).then(|| OsString::from(text))
    }
}

/// The exact `/`-separated text of a relative path (its normal components; `.` dropped).
pub fn encode_rel_path(rel: &Path) -> String {
    let parts: Vec<Cow<'_, str>> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(encode_os(n)),
            Component::ParentDir => Some(Cow::Borrowed("..")),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// The relative path a `/`-separated canonical text stands for; `None` for a text that is not
/// canonical ([`decode_bytes`]).
pub fn decode_rel_path(text: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in text.split('/').filter(|p| !p.is_empty()) {
        out.push(decode_os(part)?);
    }
    Some(out)
}

/// The exact text of a whole path (an absolute root, say).
pub fn encode_path(path: &Path) -> Cow<'_, str> {
    encode_os(path.as_os_str())
}

/// The path a canonical text made by [`encode_path`] stands for.
pub fn decode_path(text: &str) -> Option<PathBuf> {
    decode_os(text).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_their_own_text() {
        for s in ["a.py", "src/été/ü.rs", "x y/z", ""] {
            assert!(matches!(encode_bytes(s.as_bytes()), Cow::Borrowed(t) if t == s));
            assert_eq!(decode_bytes(s).unwrap().as_ref(), s.as_bytes());
        }
    }

    #[test]
    fn bytes_round_trip_and_do_not_collide() {
        let cases: [&[u8]; 6] = [
            b"bad\xffname.py",
            b"bad\xfename.py",
            b"a\\b.py",
            b"a\\xffb.py",
            b"\xc3",
            b"\xe2\x82",
        ];
        let texts: Vec<String> = cases.iter().map(|c| encode_bytes(c).into_owned()).collect();
        assert_eq!(texts[0], "bad\\xffname.py");
        assert_eq!(texts[2], "a\\\\b.py");
        assert_eq!(texts[3], "a\\\\xffb.py");
        for (c, t) in cases.iter().zip(&texts) {
            assert_eq!(decode_bytes(t).unwrap().as_ref(), *c, "{t}");
        }
        let unique: std::collections::HashSet<_> = texts.iter().collect();
        assert_eq!(unique.len(), texts.len());
    }

    #[test]
    fn only_canonical_text_decodes() {
        for bad in [
            "a\\", "a\\n", "a\\x6", "a\\x61", "a\\x2fb", "a\\x00", "a\\xFF", "\\xzz",
        ] {
            assert!(decode_bytes(bad).is_none(), "{bad:?} decoded");
        }
        assert_eq!(decode_bytes("\\xff\\\\").unwrap().as_ref(), b"\xff\\");
    }

    #[cfg(unix)]
    #[test]
    fn relative_paths() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(OsStr::from_bytes(b"d\xff/f\\.py"));
        let t = encode_rel_path(p);
        assert_eq!(t, "d\\xff/f\\\\.py");
        assert_eq!(decode_rel_path(&t).unwrap(), p);
        assert!(decode_rel_path("a/\\q").is_none());
    }
}
