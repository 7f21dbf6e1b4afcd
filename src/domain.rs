//! Newtypes that parse client input at the edge: once built, a value is valid.

use std::fmt;

/// Why a value was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn refuse<T>(code: &'static str, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { code, message: message.into() })
}

/// A login name: 1–64 characters of ASCII letters, digits, `_`, `-`, `.`,
/// case-insensitive (kept in lower case: `Alice` and `alice` are one user).
/// ASCII only, so no two spellings normalise (NFKC) to the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let ok = raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if raw.is_empty() || raw.len() > 64 || !ok {
            return refuse("invalid_username", "username must be 1-64 characters of letters, digits, '_', '-' or '.'");
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A channel name: 1–80 characters once trimmed, none of them [`hidden`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 80 {
            return refuse("invalid_channel_name", "channel name must be 1-80 characters");
        }
        if name.chars().any(hidden) {
            return refuse(
                "invalid_channel_name",
                "channel name must not contain control, format (bidirectional, zero-width, soft hyphen, tag), \
                 line-separator or filler characters",
            );
        }
        Ok(Self(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Message text: 1–4000 characters, not only white space, no control
/// characters but tab and line breaks (PostgreSQL text cannot hold NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

/// Refuses control characters other than tab, LF and CR.
fn refuse_controls(raw: &str) -> Result<(), ParseError> {
    if raw.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return refuse(
            "invalid_content",
            "message content must not contain control characters (tab and line breaks are fine)",
        );
    }
    Ok(())
}

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;

impl MessageContent {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.trim().is_empty() || raw.chars().count() > MAX_MESSAGE_CHARS {
            return refuse("invalid_content", format!("message content must be 1-{MAX_MESSAGE_CHARS} characters"));
        }
        refuse_controls(raw)?;
        Ok(Self(raw.to_owned()))
    }
    /// Like [`MessageContent::parse`], but empty text is fine: files carry the message.
    pub fn parse_with_attachments(raw: &str) -> Result<Self, ParseError> {
        if raw.chars().count() > MAX_MESSAGE_CHARS {
            return refuse(
                "invalid_content",
                format!("message content must be at most {MAX_MESSAGE_CHARS} characters"),
            );
        }
        refuse_controls(raw)?;
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked() {
        assert!(Username::parse("alice_01.b-c").is_ok());
        for bad in ["", "a b", "ä", "x/y", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn channel_names_are_trimmed_and_checked() {
        assert_eq!(ChannelName::parse("  general ").unwrap().as_str(), "general");
        assert!(ChannelName::parse("   ").is_err());
        assert!(ChannelName::parse("a\nb").is_err());
        assert!(ChannelName::parse(&"x".repeat(81)).is_err());
    }

    #[test]
    fn message_content_is_bounded() {
        assert!(MessageContent::parse("hi").is_ok());
        assert!(MessageContent::parse(" \n").is_err());
        assert!(MessageContent::parse(&"x".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
    }
}

/// The name a file is shown with. Leading and trailing white space is trimmed;
/// names that could mislead or escape are refused, not rewritten (see README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

/// Longest file name, in UTF-8 bytes (the column is VARCHAR(255)).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Longest file name part of an object key. Downloads carry the full name;
/// the key only needs to be recognisable. The embedded store (s3s-fs) names a
/// multipart upload's metadata file `.bucket-{b64 bucket}.object-{b64 key}
/// .upload-{uuid}.metadata.json`, which must fit in 255 bytes: with the
/// longest key (`uploads/{10-digit channel}/{32 hex}/{name}`) and a bucket of
/// up to 21 characters, 60 does.
pub const MAX_KEY_NAME_BYTES: usize = 60;

/// The one policy for names others see (channel and file names): characters
/// that hide, reorder or fake text. Unicode categories Cc (controls), Cf
/// (format: bidirectional controls, zero-width characters, the soft hyphen,
/// tag characters U+E0000–U+E007F, U+FEFF), Zl and Zp (line and paragraph
/// separators), and the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0,
/// letters that draw nothing. (Usernames are plain ASCII.)
pub fn hidden(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    matches!(c.general_category(), G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator)
        || matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

impl FileName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let name = raw.trim();
        let problem = if name.is_empty() {
            Some("must not be empty")
        } else if name.len() > MAX_FILE_NAME_BYTES {
            Some("must be at most 255 bytes")
        } else if name.chars().any(char::is_control) {
            Some("must not contain control characters (including CR and LF)")
        } else if name.contains(['/', '\\']) {
            Some("must not contain path separators")
        } else if name.contains("..") {
            Some("must not contain '..'")
        } else if name.chars().any(hidden) {
            Some(
                "must not contain format (bidirectional, zero-width, soft hyphen, tag), line-separator or filler characters",
            )
        } else {
            None
        };
        match problem {
            Some(problem) => refuse("invalid_file_name", format!("file_name {problem}")),
            None => Ok(Self(name.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-case extension, if any (`photo.PNG` → `png`).
    pub fn extension(&self) -> Option<String> {
        let (stem, ext) = self.0.rsplit_once('.')?;
        (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
    }

    /// An ASCII version for object keys: letters, digits, `.`, `-`, `_`, at most
    /// [`MAX_KEY_NAME_BYTES`], extension kept.
    pub fn key_safe(&self) -> String {
        let clean = |s: &str| -> String {
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                let mapped = match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
                    c if c.is_whitespace() => '-',
                    _ => '_',
                };
                if !(matches!(mapped, '-' | '_') && out.ends_with(mapped)) {
                    out.push(mapped);
                }
            }
            out
        };
        let (stem, ext) = match self.0.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => (clean(stem), clean(ext)),
            _ => (clean(&self.0), String::new()),
        };
        let ext: String = ext.chars().take(16).collect();
        let mut stem: String = stem.trim_matches(['-', '_']).chars().take(MAX_KEY_NAME_BYTES - 1 - ext.len()).collect();
        if stem.is_empty() {
            stem.push_str("file");
        }
        if ext.is_empty() { stem } else { format!("{stem}.{ext}") }
    }
}

/// A MIME type without parameters, lower case (`image/png`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(String);

impl ContentType {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let essence = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let is_token =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
        match essence.split_once('/') {
            Some((top, sub)) if is_token(top) && is_token(sub) && essence.len() <= 100 => Ok(Self(essence)),
            _ => refuse("invalid_content_type", format!("'{raw}' is not a MIME type like image/png")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the type agrees with a file name's extension: true when the
    /// extension is unknown or absent, or lists this type.
    pub fn agrees_with(&self, name: &FileName) -> bool {
        let Some(ext) = name.extension() else { return true };
        let known = mime_guess::get_mime_extensions_str(&self.0).is_some_and(|exts| exts.contains(&ext.as_str()));
        let guesses = mime_guess::from_ext(&ext);
        known || guesses.is_empty() || guesses.iter().any(|m| m.essence_str() == self.0)
    }
}

/// A SHA-256 digest given by a client as 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            refuse("invalid_sha256", "sha256 must be 64 hexadecimal digits")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest in base64, as `x-amz-checksum-sha256` carries it.
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        let bytes = hex::decode(&self.0).expect("validated hex");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// How many bytes of an object are sniffed for magic numbers.
pub const SNIFF_LEN: usize = 1024;

/// Checks the first bytes of a file against its declared type. Returns what
/// was found when they contradict each other: a signature of another format,
/// or none at all for a type that always has one (PNG, PDF, ZIP…). Generic
/// binary (`application/octet-stream`) claims nothing and is never refused;
/// text types have no signature to miss, only a binary one to contradict them.
pub fn sniff_mismatch(declared: &ContentType, head: &[u8]) -> Option<String> {
    let declared = declared.as_str();
    if declared == "application/octet-stream" {
        return None;
    }
    // `infer` lists octet-stream (for a font format) and text types among
    // those it recognises; neither promises a signature.
    let has_signature = infer::is_mime_supported(declared) && !declared.starts_with("text/");
    match infer::get(head).map(|kind| kind.mime_type()) {
        None if has_signature && !head.is_empty() => Some("no recognisable signature".to_owned()),
        None => None,
        Some(found) if compatible(declared, found) => None,
        Some(found) => Some(found.to_owned()),
    }
}

fn compatible(declared: &str, detected: &str) -> bool {
    let zip_based = |t: &str| {
        t == "application/zip"
            || t.starts_with("application/vnd.openxmlformats-officedocument.")
            || t.starts_with("application/vnd.oasis.opendocument.")
            || matches!(t, "application/epub+zip" | "application/java-archive")
    };
    let top = |t: &str| t.split('/').next().unwrap_or_default().to_owned();
    declared == detected
        || (zip_based(declared) && zip_based(detected))
        || (declared.ends_with("+xml") && detected == "text/xml")
        || (matches!(top(declared).as_str(), "audio" | "video") && matches!(top(detected).as_str(), "audio" | "video"))
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn bad_file_names_are_refused() {
        for bad in [
            "",
            "   ",
            "a/b.txt",
            "a\\b.txt",
            "..",
            "../etc/passwd",
            "a..b",
            "a\r\nb.txt",
            "a\0b",
            "tab\there",
            "invoice\u{202E}fdp.exe",
            "zero\u{200B}width.txt",
            "bom\u{FEFF}.txt",
            &"x".repeat(256),
        ] {
            assert!(FileName::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(FileName::parse("  report 2026.pdf ").unwrap().as_str(), "report 2026.pdf");
        assert!(FileName::parse("Résumé — final.docx").is_ok());
    }

    #[test]
    fn key_safe_names_are_ascii_and_keep_the_extension() {
        assert_eq!(FileName::parse("Résumé final.PDF").unwrap().key_safe(), "R_sum_-final.PDF");
        assert_eq!(FileName::parse("日本語.png").unwrap().key_safe(), "file.png");
        let long = FileName::parse(&format!("{}.txt", "a".repeat(200))).unwrap().key_safe();
        assert!(long.len() <= MAX_KEY_NAME_BYTES && long.ends_with(".txt"));
    }

    #[test]
    fn content_types_agree_with_extensions() {
        let png = ContentType::parse("image/PNG").unwrap();
        assert_eq!(png.as_str(), "image/png");
        assert!(png.agrees_with(&FileName::parse("a.png").unwrap()));
        assert!(!png.agrees_with(&FileName::parse("a.jpg").unwrap()));
        assert!(png.agrees_with(&FileName::parse("noext").unwrap()));
        assert!(
            ContentType::parse("text/plain; charset=utf-8").unwrap().agrees_with(&FileName::parse("a.txt").unwrap())
        );
        assert!(ContentType::parse("nonsense").is_err());
    }

    #[test]
    fn sniffing_catches_disguised_content() {
        let png = ContentType::parse("image/png").unwrap();
        assert!(sniff_mismatch(&png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").is_none());
        assert!(sniff_mismatch(&png, b"<!DOCTYPE html><html><script>alert(1)</script>").is_some());
        assert!(sniff_mismatch(&png, b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0").is_some());
        let text = ContentType::parse("text/plain").unwrap();
        assert!(sniff_mismatch(&text, b"just some words").is_none());
        assert!(sniff_mismatch(&text, b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0").is_some());
        let pdf = ContentType::parse("application/pdf").unwrap();
        assert_eq!(sniff_mismatch(&pdf, b"no header at all").as_deref(), Some("no recognisable signature"));
    }

    #[test]
    fn generic_binary_and_signatureless_types_pass_the_sniff() {
        let binary = ContentType::parse("application/octet-stream").unwrap();
        let random: Vec<u8> = (0..1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let gzip = b"\x1f\x8b\x08\0\0\0\0\0\0\x03\xcbH\xcd\xc9\xc9\x07\0";
        // EOT: the font `infer` files under application/octet-stream.
        let mut eot = [0u8; 64];
        eot[34..36].copy_from_slice(b"LP");
        eot[8..11].copy_from_slice(&[0x02, 0x00, 0x01]);
        for head in [&random[..], &gzip[..], &eot[..], b"MZ\x90\0"] {
            assert!(sniff_mismatch(&binary, head).is_none(), "{:?}", &head[..4]);
        }
        let json = ContentType::parse("application/json").unwrap();
        assert!(sniff_mismatch(&json, b"{\"a\": 1}").is_none());
        let markdown = ContentType::parse("text/markdown").unwrap();
        assert!(sniff_mismatch(&markdown, b"# Title").is_none());
    }
}

/// `Content-Disposition` for a download: an ASCII `filename` fallback (quotes,
/// backslashes, controls and non-ASCII replaced by `_`) and the exact name as
/// RFC 5987 `filename*`.
pub fn content_disposition(kind: &str, name: &str) -> String {
    const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let fallback: String = name
        .chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' { c } else { '_' })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR);
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod disposition_tests {
    use super::{ChannelName, FileName, Username, content_disposition};

    #[test]
    fn names_are_escaped_in_both_forms() {
        assert_eq!(
            content_disposition("attachment", "a\"evil.txt"),
            "attachment; filename=\"a_evil.txt\"; filename*=UTF-8''a%22evil.txt"
        );
        assert_eq!(
            content_disposition("attachment", "a\r\nX: 1.txt"),
            "attachment; filename=\"a__X: 1.txt\"; filename*=UTF-8''a%0D%0AX%3A%201.txt"
        );
        assert_eq!(
            content_disposition("inline", "résumé 日本.pdf"),
            "inline; filename=\"r_sum_ __.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.pdf"
        );
    }

    #[test]
    fn names_others_see_refuse_hidden_characters_by_category() {
        for name in
            ["\u{202E}evil", "a\u{200B}b", "soft\u{00AD}hyphen", "tag\u{E0041}", "filler\u{3164}", "line\u{2028}break"]
        {
            assert!(ChannelName::parse(name).is_err(), "channel {name:?}");
            assert!(FileName::parse(&format!("{name}.txt")).is_err(), "file {name:?}");
        }
        for name in ["café", "日本語", "naïve résumé", "emoji 🎉"] {
            assert!(ChannelName::parse(name).is_ok(), "channel {name:?}");
            assert!(FileName::parse(&format!("{name}.txt")).is_ok(), "file {name:?}");
        }
    }

    #[test]
    fn usernames_are_case_insensitive() {
        assert_eq!(Username::parse("ALICE").unwrap(), Username::parse("alice").unwrap());
        assert_eq!(Username::parse("Alice.B").unwrap().as_str(), "alice.b");
    }
}
