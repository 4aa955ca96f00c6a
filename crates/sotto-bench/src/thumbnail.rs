//! `thumbnail`: how long a sender takes to make a picture's preview (decode,
//! turn upright, shrink, re-encode), for phone-camera sizes, and how large
//! the preview is. The pictures are made here (a gradient with noise, so
//! they compress like photos rather than flat colour).

use std::time::Instant;

use anyhow::{Context, Result};

pub struct Row {
    pub width: u32,
    pub height: u32,
    pub source_bytes: usize,
    pub median_ms: f64,
    pub preview_bytes: usize,
}

fn photo(width: u32, height: u32) -> Result<Vec<u8>> {
    let mut seed = 0x9e37_79b9_u32;
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed % 24) as u8;
        image::Rgb([((x * 255) / width) as u8 ^ noise, ((y * 255) / height) as u8, 128u8.wrapping_add(noise)])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 88).encode_image(&picture).context("encoding")?;
    Ok(out)
}

pub fn run(runs: usize) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (width, height) in [(1600, 1200), (4032, 3024), (8000, 6000)] {
        let source = photo(width, height)?;
        let mut times = Vec::new();
        let mut preview_bytes = 0;
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            let t = sotto_core::thumbnail::of_bytes(&source).context("no preview made")?;
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            preview_bytes = t.jpeg.len();
        }
        times.sort_by(f64::total_cmp);
        rows.push(Row { width, height, source_bytes: source.len(), median_ms: times[times.len() / 2], preview_bytes });
    }
    Ok(rows)
}
