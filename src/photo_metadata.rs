//! Photo privacy: removes location and other metadata (EXIF, XMP, IPTC,
//! comments, text chunks) from JPEG, PNG and WebP files without touching the
//! pixels. Only the EXIF orientation survives, rewritten as a tag of its own,
//! so a photo taken sideways still shows upright; colour profiles stay.

use bytes::{BufMut, Bytes, BytesMut};
use image::metadata::Orientation;

/// Image types whose metadata [`strip`] removes.
pub fn strippable(content_type: &str) -> bool {
    matches!(content_type, "image/jpeg" | "image/png" | "image/webp")
}

/// What [`strip`] made of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stripped {
    /// There was nothing to remove: the file is served as uploaded.
    Unchanged,
    /// The file without its metadata.
    Cleaned(Bytes),
    /// The file's structure is broken where metadata could hide: it cannot
    /// be cleaned (a JPEG segment declaring a length under 2 bytes).
    Malformed(&'static str),
}

/// The file of `content_type` without its metadata. Files that do not parse
/// as their type are cleaned as far as they do: a truncated file keeps its
/// cut-off tail unless that tail is itself metadata.
pub fn strip(content_type: &str, bytes: Bytes) -> Stripped {
    let cleaned = match content_type {
        "image/jpeg" => match strip_jpeg(&bytes) {
            Ok(cleaned) => cleaned,
            Err(reason) => return Stripped::Malformed(reason),
        },
        "image/png" => strip_png(&bytes),
        "image/webp" => strip_webp(&bytes),
        _ => return Stripped::Unchanged,
    };
    if cleaned == bytes { Stripped::Unchanged } else { Stripped::Cleaned(cleaned) }
}

/// A TIFF (EXIF) block holding only the orientation tag, or `None` when the
/// image needs no turning.
fn orientation_only(exif: &[u8]) -> Option<Bytes> {
    let orientation = Orientation::from_exif_chunk(exif)?;
    if orientation == Orientation::NoTransforms {
        return None;
    }
    let mut tiff = BytesMut::with_capacity(26);
    tiff.put_slice(b"MM\0\x2a"); // big-endian TIFF
    tiff.put_u32(8); // the first IFD follows the header
    tiff.put_u16(1); // one entry:
    tiff.put_u16(0x0112); // Orientation,
    tiff.put_u16(3); // SHORT,
    tiff.put_u32(1); // one value,
    tiff.put_u16(orientation.to_exif().into());
    tiff.put_u16(0); // (padding of the value field)
    tiff.put_u32(0); // no next IFD
    Some(tiff.freeze())
}

const EXIF_PREFIX: &[u8] = b"Exif\0\0";

/// JPEG markers.
mod marker {
    pub const SOI: u8 = 0xd8;
    pub const EOI: u8 = 0xd9;
    pub const SOS: u8 = 0xda;
    pub const APP0: u8 = 0xe0;
    pub const APP1: u8 = 0xe1;
    pub const APP2: u8 = 0xe2;
    pub const APP14: u8 = 0xee;
    pub const APP15: u8 = 0xef;
    pub const COM: u8 = 0xfe;
}

/// Whether a JPEG segment is metadata to drop: every APPn and comment but
/// JFIF and its extension (APP0 `JFIF`, `JFXX`), the colour profile (APP2
/// `ICC_PROFILE`) and Adobe's colour transform (APP14), which decoders need.
fn is_jpeg_metadata(m: u8, contents: &[u8]) -> bool {
    match m {
        marker::APP0 => !(contents.starts_with(b"JFIF\0") || contents.starts_with(b"JFXX\0")),
        marker::APP14 => false,
        marker::APP2 => !contents.starts_with(b"ICC_PROFILE\0"),
        marker::APP1..=marker::APP15 | marker::COM => true,
        _ => false,
    }
}

/// Walks every segment of a JPEG, those between the scans of a progressive
/// image included, keeping what decoders need, and ends the file at its EOI
/// marker: anything after it (the secondary images of MPF files, vendor
/// trailers) may carry metadata of its own.
fn strip_jpeg(bytes: &[u8]) -> Result<Bytes, &'static str> {
    if bytes.get(..2) != Some(&[0xff, marker::SOI]) {
        return Ok(Bytes::copy_from_slice(bytes));
    }
    let mut out = BytesMut::with_capacity(bytes.len());
    out.put_slice(&bytes[..2]);
    let mut exif: Option<(usize, Option<Bytes>)> = None;
    let mut pos = 2;
    let mut in_scan = false;
    while pos < bytes.len() {
        if in_scan {
            // Entropy-coded data: up to the next marker that is not a stuffed
            // byte (FF 00) or a restart (FF D0–D7).
            let start = pos;
            pos = next_marker(bytes, pos);
            out.put_slice(&bytes[start..pos]);
            in_scan = false;
            continue;
        }
        if bytes[pos] != 0xff || bytes.get(pos + 1) == Some(&0xff) {
            // Garbage between segments or a fill byte: kept, a decoder skips it.
            out.put_u8(bytes[pos]);
            pos += 1;
            continue;
        }
        let Some(&m) = bytes.get(pos + 1) else {
            out.put_u8(0xff);
            break;
        };
        match m {
            marker::EOI => {
                out.put_slice(&[0xff, marker::EOI]);
                break;
            }
            0x01 | 0xd0..=0xd7 => {
                out.put_slice(&bytes[pos..pos + 2]);
                pos += 2;
                continue;
            }
            _ => {}
        }
        let declared = bytes.get(pos + 2..pos + 4).map(|len| u16::from_be_bytes([len[0], len[1]]) as usize);
        if declared.is_some_and(|len| len < 2) {
            return Err("a JPEG segment declares a length under 2 bytes");
        }
        let segment = declared.map(|len| pos + 2 + len).and_then(|end| Some((end, bytes.get(pos + 4..end)?)));
        let Some((end, contents)) = segment else {
            // Cut off inside this segment: the rest is kept unless it is metadata.
            if !is_jpeg_metadata(m, &bytes[(pos + 4).min(bytes.len())..]) {
                out.put_slice(&bytes[pos..]);
            }
            break;
        };
        if !is_jpeg_metadata(m, contents) {
            out.put_slice(&bytes[pos..end]);
        } else if m == marker::APP1 && exif.is_none() && contents.starts_with(EXIF_PREFIX) {
            exif = Some((out.len(), orientation_only(&contents[EXIF_PREFIX.len()..])));
        }
        in_scan = m == marker::SOS;
        pos = end;
    }
    Ok(match exif {
        Some((at, Some(tiff))) => {
            let mut segment = BytesMut::with_capacity(4 + EXIF_PREFIX.len() + tiff.len());
            segment.put_slice(&[0xff, marker::APP1]);
            segment.put_u16((2 + EXIF_PREFIX.len() + tiff.len()) as u16);
            segment.put_slice(EXIF_PREFIX);
            segment.put_slice(&tiff);
            splice(out, at, &segment)
        }
        _ => out.freeze(),
    })
}

/// Where the entropy-coded data starting at `from` ends: the next marker
/// that is neither a stuffed byte (FF 00) nor a restart (FF D0–D7), or the
/// end of the file.
fn next_marker(bytes: &[u8], from: usize) -> usize {
    let mut pos = from;
    while let Some(ff) = bytes[pos..].iter().position(|&b| b == 0xff) {
        pos += ff;
        match bytes.get(pos + 1) {
            Some(0x00 | 0xd0..=0xd7) => pos += 2,
            Some(_) => return pos,
            None => return bytes.len(),
        }
    }
    bytes.len()
}

/// PNG chunks of metadata: EXIF (also compressed, `zxIf`, and misspelt),
/// text (where XMP lives too), time and C2PA provenance (`caBX`).
fn is_png_metadata(kind: &[u8]) -> bool {
    kind.eq_ignore_ascii_case(b"eXIf") || matches!(kind, b"zxIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME" | b"caBX")
}

/// Drops the metadata chunks of a PNG and anything after its IEND chunk. A
/// truncated file keeps its cut-off tail unless that is a metadata chunk.
fn strip_png(bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(bytes.len());
    let mut pos = PNG_SIGNATURE_LEN.min(bytes.len());
    out.put_slice(&bytes[..pos]);
    let mut exif: Option<(usize, Bytes)> = None;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + 8) else {
            out.put_slice(&bytes[pos..]);
            break;
        };
        let kind = &header[4..8];
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(chunk) = pos.checked_add(12 + len).and_then(|end| bytes.get(pos..end)) else {
            if !is_png_metadata(kind) {
                out.put_slice(&bytes[pos..]);
            }
            break;
        };
        if is_png_metadata(kind) {
            if kind == b"eXIf" && exif.is_none() {
                exif = orientation_only(&chunk[8..8 + len]).map(|tiff| (out.len(), tiff));
            }
        } else {
            out.put_slice(chunk);
        }
        pos += chunk.len();
        if kind == b"IEND" {
            break;
        }
    }
    let Some((at, tiff)) = exif else {
        return out.freeze();
    };
    let mut chunk = BytesMut::with_capacity(12 + tiff.len());
    chunk.put_u32(tiff.len() as u32);
    chunk.put_slice(b"eXIf");
    chunk.put_slice(&tiff);
    chunk.put_u32(crc32fast::hash(&chunk[4..]));
    splice(out, at, &chunk)
}

const PNG_SIGNATURE_LEN: usize = 8;

/// `out` with `insert` put in at `at`.
fn splice(out: BytesMut, at: usize, insert: &[u8]) -> Bytes {
    let mut with = BytesMut::with_capacity(out.len() + insert.len());
    with.put_slice(&out[..at]);
    with.put_slice(insert);
    with.put_slice(&out[at..]);
    with.freeze()
}

/// VP8X flags of the chunks [`strip_webp`] removes.
const WEBP_FLAG_XMP: u8 = 0x04;
const WEBP_FLAG_EXIF: u8 = 0x08;

/// Drops the `EXIF` and `XMP ` chunks of a WebP file (keeping only its
/// orientation) and anything after the RIFF container, and brings the VP8X
/// flags in line. Anything not a WebP RIFF file is returned as it is.
fn strip_webp(bytes: &[u8]) -> Bytes {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Bytes::copy_from_slice(bytes);
    }
    let declared = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let end = declared.saturating_add(8).min(bytes.len());
    let mut chunks = BytesMut::with_capacity(end);
    let mut vp8x_at = None;
    let mut orientation = None;
    let mut pos = 12;
    while pos < end {
        let Some(header) = bytes.get(pos..pos + 8).filter(|_| pos + 8 <= end) else {
            chunks.put_slice(&bytes[pos..end]);
            break;
        };
        let id = &header[..4];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let metadata = id.eq_ignore_ascii_case(b"EXIF") || id.eq_ignore_ascii_case(b"XMP ");
        let Some(chunk_end) = (pos + 8).checked_add(size + (size & 1)).filter(|&e| e <= end) else {
            if !metadata {
                chunks.put_slice(&bytes[pos..end]);
            }
            break;
        };
        if id.eq_ignore_ascii_case(b"EXIF") && orientation.is_none() {
            let data = &bytes[pos + 8..pos + 8 + size];
            orientation = orientation_only(data.strip_prefix(EXIF_PREFIX).unwrap_or(data));
        } else if !metadata {
            if id == b"VP8X" {
                vp8x_at = Some(chunks.len());
            }
            chunks.put_slice(&bytes[pos..chunk_end]);
        }
        pos = chunk_end;
    }
    // Only the extended format (VP8X) can carry EXIF.
    let orientation = orientation.filter(|_| vp8x_at.is_some());
    if let Some(tiff) = &orientation {
        chunks.put_slice(b"EXIF");
        chunks.put_u32_le(tiff.len() as u32);
        chunks.put_slice(tiff);
        if tiff.len() % 2 == 1 {
            chunks.put_u8(0);
        }
    }
    if let Some(flags) = vp8x_at.map(|at| at + 8).filter(|&at| at < chunks.len()) {
        chunks[flags] &= !(WEBP_FLAG_XMP | WEBP_FLAG_EXIF);
        if orientation.is_some() {
            chunks[flags] |= WEBP_FLAG_EXIF;
        }
    }
    let mut out = BytesMut::with_capacity(12 + chunks.len());
    out.put_slice(b"RIFF");
    out.put_u32_le(4 + chunks.len() as u32);
    out.put_slice(b"WEBP");
    out.put_slice(&chunks);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage};

    use super::*;

    /// The latitude 52° 31′ 0″ as EXIF stores it: three rationals.
    const LATITUDE: [u8; 24] = [52, 0, 0, 0, 1, 0, 0, 0, 31, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    const XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>exif:GPSLatitude</x:xmpmeta>";

    /// A little-endian TIFF block: orientation 6 (turn 90°) and a GPS IFD
    /// holding a latitude.
    fn exif() -> Vec<u8> {
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend([2, 0]);
        tiff.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
        tiff.extend([0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]);
        tiff.extend([0, 0, 0, 0]);
        tiff.extend([2, 0]);
        tiff.extend([1, 0, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
        tiff.extend([2, 0, 5, 0, 3, 0, 0, 0, 68, 0, 0, 0]);
        tiff.extend([0, 0, 0, 0]);
        tiff.extend(LATITUDE);
        tiff
    }

    fn encoded(format: ImageFormat) -> Vec<u8> {
        let pixels = RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(pixels).write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn pixels(bytes: &[u8]) -> Vec<u8> {
        image::load_from_memory(bytes).unwrap().to_rgb8().into_raw()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn cleaned(content_type: &str, bytes: &[u8]) -> Bytes {
        match strip(content_type, Bytes::copy_from_slice(bytes)) {
            Stripped::Cleaned(bytes) => bytes,
            other => panic!("nothing was removed: {other:?}"),
        }
    }

    fn jpeg_segment(marker: u8, contents: &[u8]) -> Vec<u8> {
        let mut segment = vec![0xff, marker];
        segment.extend(((contents.len() + 2) as u16).to_be_bytes());
        segment.extend(contents);
        segment
    }

    /// A JPEG with EXIF (GPS), XMP and a comment up front, a comment between
    /// its scan and EOI, and a trailer after EOI.
    fn jpeg_with_metadata() -> Vec<u8> {
        let plain = encoded(ImageFormat::Jpeg);
        let mut jpeg = plain[..2].to_vec();
        jpeg.extend(jpeg_segment(marker::APP1, &[EXIF_PREFIX, &exif()].concat()));
        jpeg.extend(jpeg_segment(marker::APP1, XMP));
        jpeg.extend(jpeg_segment(marker::COM, b"taken at home"));
        jpeg.extend(jpeg_segment(marker::APP0, b"Exif\0\0hidden in APP0"));
        jpeg.extend(&plain[2..plain.len() - 2]);
        jpeg.extend(jpeg_segment(marker::COM, b"late comment"));
        jpeg.extend([0xff, marker::EOI]);
        jpeg.extend(b"TRAILER with a second image");
        jpeg
    }

    #[test]
    fn a_jpeg_loses_location_xmp_comments_and_trailer_but_keeps_pixels_and_orientation() {
        let jpeg = jpeg_with_metadata();
        let out = cleaned("image/jpeg", &jpeg);
        for gone in [&LATITUDE[..], XMP, b"taken at home", b"hidden in APP0", b"late comment", b"TRAILER"] {
            assert!(!contains(&out, gone), "{:?} is still there", String::from_utf8_lossy(gone));
        }
        assert_eq!(pixels(&out), pixels(&jpeg));
        let mut decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&out[..])).unwrap();
        assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);
        assert_eq!(&out[out.len() - 2..], [0xff, marker::EOI]);
    }

    #[test]
    fn an_image_without_metadata_is_unchanged() {
        for (content_type, format) in [("image/jpeg", ImageFormat::Jpeg), ("image/png", ImageFormat::Png)] {
            let plain = Bytes::from(encoded(format));
            assert_eq!(strip(content_type, plain), Stripped::Unchanged, "{content_type}");
        }
        assert_eq!(strip("image/gif", Bytes::from(encoded(ImageFormat::Gif))), Stripped::Unchanged);
    }

    #[test]
    fn a_truncated_jpeg_keeps_its_pixels_and_loses_its_exif() {
        let jpeg = jpeg_with_metadata();
        let cut = &jpeg[..jpeg.len() - 200];
        let out = cleaned("image/jpeg", cut);
        assert!(!contains(&out, &LATITUDE));
        assert!(out.ends_with(&cut[cut.len() - 100..]), "the cut-off scan is kept");
        // Cut inside the EXIF segment: nothing of it is kept.
        let out = cleaned("image/jpeg", &jpeg[..40]);
        assert_eq!(&out[..], &jpeg[..2]);
    }

    #[test]
    fn a_jpeg_segment_shorter_than_its_length_field_is_malformed() {
        let plain = encoded(ImageFormat::Jpeg);
        for len in [0u8, 1] {
            let mut jpeg = plain[..2].to_vec();
            jpeg.extend([0xff, marker::APP1, 0, len]);
            jpeg.extend(EXIF_PREFIX);
            jpeg.extend(exif());
            jpeg.extend(&plain[2..]);
            assert!(matches!(strip("image/jpeg", Bytes::from(jpeg)), Stripped::Malformed(_)), "length {len}");
        }
    }

    /// `png` with `chunks` put in right after its IHDR chunk.
    fn png_with(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let png = encoded(ImageFormat::Png);
        let after_ihdr = 8 + 12 + 13;
        let mut out = png[..after_ihdr].to_vec();
        for (kind, data) in chunks {
            out.extend((data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend(*kind);
            out.extend(*data);
            let crc = crc32fast::hash(&out[start..]);
            out.extend(crc.to_be_bytes());
        }
        out.extend(&png[after_ihdr..]);
        out
    }

    #[test]
    fn a_png_loses_exif_text_and_time_but_keeps_pixels_and_orientation() {
        let png = png_with(&[
            (b"eXIf", &exif()),
            (b"tEXt", b"Comment\0taken at home"),
            (b"iTXt", &[b"XML:com.adobe.xmp\0\0\0\0\0", XMP].concat()),
            (b"tIME", &[7, 234, 12, 3, 12, 0, 0]),
            (b"zxIf", b"compressed location"),
            (b"caBX", b"provenance with a location"),
        ]);
        let mut with_trailer = png.clone();
        with_trailer.extend(b"TRAILER");
        let out = cleaned("image/png", &with_trailer);
        for gone in [&LATITUDE[..], XMP, b"taken at home", b"tIME", b"location", b"TRAILER"] {
            assert!(!contains(&out, gone), "{:?} is still there", String::from_utf8_lossy(gone));
        }
        assert_eq!(pixels(&out), pixels(&png));
        let mut decoder = image::codecs::png::PngDecoder::new(Cursor::new(&out[..])).unwrap();
        assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);
    }

    #[test]
    fn a_png_that_is_only_a_header_is_unchanged() {
        let mut fake = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        fake.resize(1000, 0x41);
        assert_eq!(strip("image/png", Bytes::from(fake)), Stripped::Unchanged);
    }

    fn riff_chunk(id: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut chunk = id.to_vec();
        chunk.extend((data.len() as u32).to_le_bytes());
        chunk.extend(data);
        if data.len() % 2 == 1 {
            chunk.push(0);
        }
        chunk
    }

    #[test]
    fn a_webp_loses_exif_and_xmp_but_keeps_pixels_and_orientation() {
        let simple = encoded(ImageFormat::WebP);
        let mut vp8x = vec![WEBP_FLAG_EXIF | WEBP_FLAG_XMP, 0, 0, 0];
        vp8x.extend(&63u32.to_le_bytes()[..3]);
        vp8x.extend(&47u32.to_le_bytes()[..3]);
        let mut chunks = riff_chunk(b"VP8X", &vp8x);
        chunks.extend(&simple[12..]);
        chunks.extend(riff_chunk(b"EXIF", &exif()));
        chunks.extend(riff_chunk(b"XMP ", XMP));
        let mut webp = b"RIFF".to_vec();
        webp.extend((4 + chunks.len() as u32).to_le_bytes());
        webp.extend(b"WEBP");
        webp.extend(chunks);

        let out = cleaned("image/webp", &webp);
        assert!(!contains(&out, &LATITUDE) && !contains(&out, XMP));
        assert_eq!(out[20], WEBP_FLAG_EXIF, "the VP8X flags name what is left");
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize, out.len() - 8);
        assert_eq!(pixels(&out), pixels(&simple));
        let mut decoder = image::codecs::webp::WebPDecoder::new(Cursor::new(&out[..])).unwrap();
        assert_eq!(decoder.orientation().unwrap(), Orientation::Rotate90);
    }
}
