//! Preview generation: the time and the memory one thumbnail costs, for a
//! 12-megapixel photo and for the largest image the default limit lets
//! through (50 megapixels), measured in this process on the broker's own
//! `render` (read header, decode under limits, orient, scale, encode).

use std::{io::Cursor, time::Instant};

use chatgenius_files::service::previews::render;
use image::{DynamicImage, ImageFormat, RgbImage};

/// The default PREVIEW_MAX_MEGAPIXELS, in pixels.
const MAX_PIXELS: u64 = 50_000_000;
const ROUNDS: usize = 3;

fn photo(width: u32, height: u32) -> Vec<u8> {
    let pixels =
        RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8]));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(pixels).write_to(&mut out, ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

pub fn run() {
    println!("\n## Preview generation (one thumbnail, `render`, this process)\n");
    println!("| image | JPEG MiB | time p50 ms | peak RSS above the process's, MiB |");
    println!("|---|---:|---:|---:|");
    for (label, width, height) in
        [("12 MP photo, 4000 × 3000", 4000, 3000), ("50 MP (the default limit), 8160 × 6120", 8160, 6120)]
    {
        let bytes = photo(width, height);
        let mut times = Vec::new();
        let mut peak = 0;
        for _ in 0..ROUNDS {
            // Reset the peak (VmHWM) to the current RSS, then render once.
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            let before = status_kib("VmRSS:");
            let started = Instant::now();
            let rendered = render(&bytes, MAX_PIXELS).expect("renders");
            times.push(started.elapsed());
            assert!(rendered.thumbnail_width <= 320 && rendered.thumbnail_height <= 320);
            peak = peak.max(status_kib("VmHWM:").saturating_sub(before));
        }
        times.sort();
        println!(
            "| {label} | {:.1} | {:.0} | {:.1} |",
            bytes.len() as f64 / 1048576.0,
            times[ROUNDS / 2].as_secs_f64() * 1000.0,
            peak as f64 / 1024.0
        );
    }
}
