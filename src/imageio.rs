//! Image files in and out. PNG and JPEG are decoded (8 or 16 bits, gray, gray+alpha, RGB, RGBA;
//! the EXIF orientation of JPEGs is applied) into planar float pictures in [0, 1]; pictures are
//! written as PNG (8 or 16 bits) or, for a `.jpg`/`.jpeg` name, JPEG, through a temporary file
//! and a rename so that no partial file is ever left behind.

use crate::error::{Error, Result};
use image::{ColorType, DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageReader};
use std::path::Path;

/// A planar float picture: 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA) planes of
/// `width * height` values in [0, 1], row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub planes: Vec<Vec<f32>>,
    /// The source had 16 bits per sample (outputs are then written with 16 bits too).
    pub sixteen_bit: bool,
}

/// Luminance of sRGB values as the shipped colourisation models were trained with
/// (ITU-R BT.601 weights on the gamma-encoded values).
pub fn luminance(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

impl Picture {
    pub fn new(width: usize, height: usize, planes: Vec<Vec<f32>>) -> Picture {
        debug_assert!(planes.iter().all(|p| p.len() == width * height));
        Picture { width, height, planes, sixteen_bit: false }
    }

    pub fn pixels(&self) -> usize {
        self.width * self.height
    }

    pub fn channels(&self) -> usize {
        self.planes.len()
    }

    pub fn has_alpha(&self) -> bool {
        matches!(self.planes.len(), 2 | 4)
    }

    pub fn is_gray(&self) -> bool {
        self.planes.len() <= 2
    }

    pub fn alpha(&self) -> Option<&[f32]> {
        match self.planes.len() {
            2 => Some(&self.planes[1]),
            4 => Some(&self.planes[3]),
            _ => None,
        }
    }

    /// The colour planes as RGB (gray replicated).
    pub fn rgb(&self) -> [&[f32]; 3] {
        if self.is_gray() {
            [&self.planes[0], &self.planes[0], &self.planes[0]]
        } else {
            [&self.planes[0], &self.planes[1], &self.planes[2]]
        }
    }

    /// Luminance Y = 0.299 R + 0.587 G + 0.114 B (a gray picture's own values).
    pub fn luma(&self) -> Vec<f32> {
        if self.is_gray() {
            return self.planes[0].clone();
        }
        let [r, g, b] = self.rgb();
        (0..self.pixels()).map(|i| luminance(r[i], g[i], b[i])).collect()
    }
}

fn decode_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}: cannot decode the image: {e}", path.display()))
}

/// Read a PNG or JPEG file (the format is taken from the content, not the name).
pub fn read(path: &Path) -> Result<Picture> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, path)
}

/// Decode image bytes (`path` only names the source in messages).
pub fn decode(bytes: &[u8], path: &Path) -> Result<Picture> {
    if bytes.is_empty() {
        return Err(Error::Data(format!("{}: the file is empty, not an image", path.display())));
    }
    let reader =
        ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| decode_err(path, e))?;
    match reader.format() {
        Some(image::ImageFormat::Png) | Some(image::ImageFormat::Jpeg) => {}
        Some(f) => {
            return Err(Error::Data(format!("{}: {f:?} images are not supported (PNG and JPEG are)", path.display())));
        }
        None => {
            return Err(Error::Data(format!("{}: not a PNG or JPEG file (unrecognised content)", path.display())));
        }
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        check_jpeg_complete(bytes).map_err(|e| decode_err(path, e))?;
    }
    let mut decoder = reader.into_decoder().map_err(|e| decode_err(path, e))?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_err(path, e))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::Data(format!("{}: the image is empty ({w}x{h})", path.display())));
    }
    let color = img.color();
    let sixteen_bit = matches!(color.bytes_per_pixel() / color.channel_count(), 2..=4);
    let n = w * h;
    let planar = |data: &[f32], c: usize| -> Vec<Vec<f32>> {
        (0..c).map(|k| (0..n).map(|i| data[i * c + k]).collect()).collect()
    };
    let planes = match color {
        ColorType::L8 | ColorType::L16 => vec![img.to_luma32f().into_raw()],
        ColorType::La8 | ColorType::La16 => planar(img.to_luma_alpha32f().as_raw(), 2),
        ColorType::Rgba8 | ColorType::Rgba16 | ColorType::Rgba32F => planar(img.to_rgba32f().as_raw(), 4),
        _ => planar(img.to_rgb32f().as_raw(), 3),
    };
    Ok(Picture { width: w, height: h, planes, sixteen_bit })
}

/// A JPEG decoder fills a truncated scan with gray without complaint; refuse such files: the
/// segments before the first scan must be complete and an end-of-image marker must follow it
/// (inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so the first
/// FF D9 after the scan starts is the real end).
fn check_jpeg_complete(b: &[u8]) -> std::result::Result<(), String> {
    const TRUNC: &str = "the JPEG data is truncated (no end-of-image marker)";
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err("not a JPEG stream".into());
    }
    let mut i = 2;
    loop {
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&m) = b.get(i) else { return Err(TRUNC.into()) };
        if b[i - 1] != 0xFF {
            return Err(format!("bad JPEG segment structure at byte {i}"));
        }
        i += 1;
        match m {
            0xDA => break,
            0xD9 => return Err("the JPEG ends before any image data".into()),
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let len = match (b.get(i), b.get(i + 1)) {
                    (Some(&h), Some(&l)) => u16::from_be_bytes([h, l]) as usize,
                    _ => return Err(TRUNC.into()),
                };
                i += len;
                if i > b.len() {
                    return Err(TRUNC.into());
                }
            }
        }
    }
    if b[i..].windows(2).any(|w| w == [0xFF, 0xD9]) { Ok(()) } else { Err(TRUNC.into()) }
}

fn quantize8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn quantize16(v: f32) -> u16 {
    (v.clamp(0.0, 1.0) * 65535.0).round() as u16
}

/// Interleaved 8-bit samples of a picture (values clamped to [0, 1]).
pub fn to_u8(p: &Picture) -> Vec<u8> {
    let c = p.channels();
    let mut out = vec![0u8; p.pixels() * c];
    for (k, plane) in p.planes.iter().enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            out[i * c + k] = quantize8(v);
        }
    }
    out
}

fn color_type(c: usize, sixteen: bool) -> Result<ExtendedColorType> {
    Ok(match (c, sixteen) {
        (1, false) => ExtendedColorType::L8,
        (2, false) => ExtendedColorType::La8,
        (3, false) => ExtendedColorType::Rgb8,
        (4, false) => ExtendedColorType::Rgba8,
        (1, true) => ExtendedColorType::L16,
        (2, true) => ExtendedColorType::La16,
        (3, true) => ExtendedColorType::Rgb16,
        (4, true) => ExtendedColorType::Rgba16,
        _ => return Err(Error::Data(format!("cannot write a picture with {c} channels"))),
    })
}

/// Encode as PNG (16 bits per sample when `sixteen_bit`).
pub fn encode_png(p: &Picture, sixteen_bit: bool) -> Result<Vec<u8>> {
    let ct = color_type(p.channels(), sixteen_bit)?;
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    let res = if sixteen_bit {
        let c = p.channels();
        // 16-bit samples go to the encoder in native byte order
        let mut buf = vec![0u8; p.pixels() * c * 2];
        for (k, plane) in p.planes.iter().enumerate() {
            for (i, &v) in plane.iter().enumerate() {
                buf[(i * c + k) * 2..][..2].copy_from_slice(&quantize16(v).to_ne_bytes());
            }
        }
        enc.write_image(&buf, p.width as u32, p.height as u32, ct)
    } else {
        enc.write_image(&to_u8(p), p.width as u32, p.height as u32, ct)
    };
    res.map_err(|e| Error::Data(format!("PNG encoding failed: {e}")))?;
    Ok(out)
}

/// Encode as JPEG (8 bits; alpha is dropped).
pub fn encode_jpeg(p: &Picture, quality: u8) -> Result<Vec<u8>> {
    let q = match p.channels() {
        1 | 3 => p.clone(),
        2 => Picture::new(p.width, p.height, vec![p.planes[0].clone()]),
        _ => Picture::new(p.width, p.height, p.planes[..3].to_vec()),
    };
    let ct = color_type(q.channels(), false)?;
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(&to_u8(&q), q.width as u32, q.height as u32, ct)
        .map_err(|e| Error::Data(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

/// Check early (before any expensive work) that `path` can be written: its directory exists
/// and it is not a directory itself.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the directory {} does not exist", dir.display()),
            ),
        ));
    }
    if path.is_dir() {
        return Err(Error::io(path, std::io::Error::other("is a directory")));
    }
    Ok(())
}

/// Check early that a directory to write into is not an existing file (it is created when
/// missing).
pub fn check_dir_usable(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Data(format!("{}: exists and is not a directory", dir.display())));
    }
    Ok(())
}

/// Write a picture: JPEG for a `.jpg` / `.jpeg` name, PNG otherwise; atomically.
pub fn write(path: &Path, p: &Picture, sixteen_bit: bool) -> Result<()> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let bytes = if ext == "jpg" || ext == "jpeg" { encode_jpeg(p, 92)? } else { encode_png(p, sixteen_bit)? };
    crate::io_util::write_atomic(path, &bytes)
}

/// Resize every plane (Lanczos3 when shrinking or enlarging; values are not clamped).
pub fn resize_planes(planes: &[Vec<f32>], w: usize, h: usize, nw: usize, nh: usize) -> Vec<Vec<f32>> {
    if (w, h) == (nw, nh) {
        return planes.to_vec();
    }
    planes
        .iter()
        .map(|p| {
            let buf = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(w as u32, h as u32, p.clone())
                .expect("plane size matches");
            image::imageops::resize(&buf, nw as u32, nh as u32, image::imageops::FilterType::Lanczos3).into_raw()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_jpegs_decode_and_truncated_ones_are_refused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for dir in ["weights/holdout", "tests/data/images"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
            for e in entries {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "jpg") {
                    let b = std::fs::read(&p).unwrap();
                    let pic = decode(&b, &p).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(pic.channels(), 3);
                    for cut in [b.len() / 3, b.len() * 2 / 3, b.len() - 2] {
                        let e = decode(&b[..cut], &p).unwrap_err().to_string();
                        assert!(e.contains("truncated") || e.contains("cannot decode"), "{e}");
                    }
                    n += 1;
                }
            }
        }
        assert!(n >= 2);
    }
}
