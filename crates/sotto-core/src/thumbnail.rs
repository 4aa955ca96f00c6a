//! Small previews of pictures. The sender decodes a picture it is about to
//! send and re-encodes a small JPEG that travels, encrypted, inside the
//! file's message, so every recipient sees the picture at once without
//! fetching the file. Re-encoding keeps only pixels: the camera's EXIF
//! (place, time, device) never reaches the preview. The orientation EXIF
//! asked for is applied first, so the preview stands the right way up.

use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// The longest side of a preview, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// Most bytes a preview may have; a larger one from a peer is dropped.
pub const MAX_THUMBNAIL_BYTES: usize = 48 * 1024;
/// Pictures larger than this are not decoded for a preview (they are sent
/// all the same, as files).
pub const MAX_SOURCE_BYTES: u64 = 64 * 1024 * 1024;

/// A picture's preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// A baseline JPEG, at most [`MAX_THUMBNAIL_BYTES`].
    #[serde(with = "serde_bytes")]
    pub jpeg: Vec<u8>,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
}

impl Thumbnail {
    /// Whether a preview from a peer is one this client shows: a JPEG of a
    /// sane size. Anything else is dropped and the file shown without it.
    pub fn is_acceptable(&self) -> bool {
        self.jpeg.len() <= MAX_THUMBNAIL_BYTES
            && crate::content::image_type(&self.jpeg) == Some("image/jpeg")
            && (1..=THUMBNAIL_SIDE).contains(&self.width)
            && (1..=THUMBNAIL_SIDE).contains(&self.height)
    }
}

/// The preview of the picture at `path`, or `None` when it is not a PNG,
/// JPEG, GIF or WebP picture this can decode (then it is sent as a plain
/// file).
pub fn of_file(path: &std::path::Path) -> Option<Thumbnail> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_SOURCE_BYTES {
        return None;
    }
    let mut head = [0u8; 16];
    let n = std::io::Read::read(&mut std::fs::File::open(path).ok()?, &mut head).ok()?;
    crate::content::image_type(&head[..n])?;
    of_bytes(&std::fs::read(path).ok()?)
}

/// The preview of a picture held in memory (see [`of_file`]).
pub fn of_bytes(bytes: &[u8]) -> Option<Thumbnail> {
    use image::ImageDecoder;
    crate::content::image_type(bytes)?;
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    // A hostile or broken picture must not take the sender's memory: a
    // decoded 16k × 16k RGBA picture is 1 GiB, so cap what decoding may use.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().ok()?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = image::DynamicImage::from_decoder(decoder).ok()?;
    picture.apply_orientation(orientation);
    for (side, quality) in [(THUMBNAIL_SIDE, 72), (THUMBNAIL_SIDE, 50), (THUMBNAIL_SIDE / 2, 60)] {
        let small = picture.thumbnail(side, side);
        let rgb = on_white(&small);
        let mut jpeg = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality);
        rgb.write_with_encoder(encoder).ok()?;
        if jpeg.len() <= MAX_THUMBNAIL_BYTES {
            return Some(Thumbnail { jpeg, width: rgb.width(), height: rgb.height() });
        }
    }
    None
}

/// JPEG has no transparency: transparent parts are shown on white, as a
/// page would show them, rather than whatever colour hides under them.
fn on_white(picture: &image::DynamicImage) -> image::RgbImage {
    let rgba = picture.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let blend = |c: u8| ((c as u32 * a as u32 + 255 * (255 - a as u32)) / 255) as u8;
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, if x < width / 2 { 255 } else { 0 }])
        });
        let mut out = Vec::new();
        picture.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn a_picture_becomes_a_small_jpeg_keeping_its_shape() {
        let t = of_bytes(&png(1200, 800)).unwrap();
        assert_eq!((t.width, t.height), (320, 213));
        assert!(t.is_acceptable(), "{} bytes", t.jpeg.len());
        let back = image::load_from_memory(&t.jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (320, 213));
        // The transparent half is white, not black.
        let p = back.to_rgb8().get_pixel(300, 100).0;
        assert!(p.iter().all(|&c| c > 230), "{p:?}");
    }

    #[test]
    fn anything_that_is_not_a_picture_has_no_preview() {
        assert!(of_bytes(b"hello, not a picture").is_none());
        // Looks like a PNG, is not one.
        let mut fake = png(10, 10);
        fake.truncate(40);
        assert!(of_bytes(&fake).is_none());
        assert!(of_bytes(&[0x89, b'P', b'N', b'G', 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn exif_and_orientation_a_camera_wrote_do_not_reach_the_preview() {
        // A JPEG with an EXIF segment saying "rotated 90°" and naming a place.
        let picture = image::RgbImage::from_fn(400, 200, |x, _| image::Rgb([if x < 200 { 255 } else { 0 }, 0, 0]));
        let mut plain = Vec::new();
        picture.write_to(&mut Cursor::new(&mut plain), image::ImageFormat::Jpeg).unwrap();
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x02".to_vec();
        exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]); // Orientation = 6 (90° cw)
        exif.extend_from_slice(&[0x01, 0x0e, 0, 2, 0, 0, 0, 4, b'G', b'P', b'S', 0]); // ImageDescription
        exif.extend_from_slice(&[0, 0, 0, 0]);
        let mut with_exif = plain[..2].to_vec();
        with_exif.extend_from_slice(&[0xFF, 0xE1]);
        with_exif.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        with_exif.extend_from_slice(&exif);
        with_exif.extend_from_slice(&plain[2..]);

        let t = of_bytes(&with_exif).unwrap();
        // Turned upright: 400 × 200 rotated a quarter is 200 × 400.
        assert_eq!((t.width, t.height), (160, 320));
        assert!(!t.jpeg.windows(4).any(|w| w == b"Exif"), "the preview carries no EXIF");
        assert!(!t.jpeg.windows(3).any(|w| w == b"GPS"));
    }

    #[test]
    fn a_peers_preview_is_checked() {
        let good = of_bytes(&png(64, 64)).unwrap();
        assert!(good.is_acceptable());
        assert!(!Thumbnail { jpeg: png(8, 8), ..good.clone() }.is_acceptable(), "a PNG is not a preview");
        assert!(!Thumbnail { width: 5000, ..good.clone() }.is_acceptable());
        assert!(!Thumbnail { jpeg: vec![0xFF; MAX_THUMBNAIL_BYTES + 1], ..good }.is_acceptable());
    }
}
