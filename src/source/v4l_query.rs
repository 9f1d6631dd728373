//! What `cvedge sources` shows: the V4L2 devices and the modes each camera offers. Only read-only
//! ioctls (QUERYCAP, ENUM_FMT, ENUM_FRAMESIZES, ENUM_FRAMEINTERVALS) through `v4l`, nokhwa's own
//! V4L2 layer: opening a camera through nokhwa sets its format, which fails on a camera the
//! service is streaming from and would change its mode.

use std::fmt;
use std::path::{Path, PathBuf};

use ::v4l::capability::Flags;
use ::v4l::frameinterval::FrameIntervalEnum;
use ::v4l::framesize::FrameSizeEnum;
use ::v4l::video::Capture;
use ::v4l::Device;

use crate::error::{Error, Result};

const FIX_NOT_V4L: &str = "give a camera's device, one of `ls /dev/video*`";
const FIX_ACCESS: &str = "add the user to the video group (sudo usermod -aG video $USER, then log in again) or run as root";

/// The `/dev/video*` nodes nokhwa finds, in index order; empty without any (or without V4L2).
pub fn video_devices() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = super::list_v4l_devices().into_iter().map(|(path, _)| PathBuf::from(path)).collect();
    paths.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
    paths
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub path: PathBuf,
    /// The camera's name (`card`), driver and bus, as the kernel reports them.
    pub card: String,
    pub driver: String,
    pub bus: String,
    /// False for the nodes that deliver no pictures: a UVC camera's metadata node, a Pi's codec
    /// and ISP nodes. `v4l:` needs a capture node.
    pub capture: bool,
    pub formats: Vec<FormatModes>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormatModes {
    pub fourcc: String,
    pub description: String,
    pub sizes: Vec<SizeModes>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SizeModes {
    pub size: Size,
    pub rates: Rates,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Size {
    Discrete(u32, u32),
    /// Any size from `min` to `max` in `step`s (some USB and CSI bridges).
    Range { min: (u32, u32), max: (u32, u32), step: (u32, u32) },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rates {
    /// Frames per second, highest first.
    Discrete(Vec<f64>),
    Range { min: f64, max: f64 },
    /// The driver lists no intervals for this size.
    Unknown,
}

/// Queries one device node. Errors name the node: missing, not V4L2, or not readable by this user.
pub fn describe(path: &Path) -> Result<DeviceInfo> {
    let origin = path.display().to_string();
    let device = Device::with_path(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::capture(&origin, format!("no such device ({e})"), FIX_NOT_V4L),
        std::io::ErrorKind::PermissionDenied => Error::capture(&origin, format!("this user may not open it ({e})"), FIX_ACCESS),
        _ => Error::capture(&origin, format!("cannot open it ({e})"), FIX_NOT_V4L),
    })?;
    let caps = device
        .query_caps()
        .map_err(|e| Error::capture(&origin, format!("is not a V4L2 device (VIDIOC_QUERYCAP: {e})"), FIX_NOT_V4L))?;
    let capture = caps.capabilities.intersects(Flags::VIDEO_CAPTURE | Flags::VIDEO_CAPTURE_MPLANE)
        && !caps.capabilities.contains(Flags::VIDEO_M2M)
        && !caps.capabilities.contains(Flags::VIDEO_M2M_MPLANE);
    // Metadata and memory-to-memory nodes answer ENUM_FMT with nothing or with their codec's
    // formats, which no `v4l:` source can use.
    let formats = if capture { formats(&device) } else { Vec::new() };
    Ok(DeviceInfo { path: path.to_path_buf(), card: caps.card, driver: caps.driver, bus: caps.bus, capture, formats })
}

fn formats(device: &Device) -> Vec<FormatModes> {
    let Ok(descriptions) = device.enum_formats() else { return Vec::new() };
    descriptions
        .into_iter()
        .map(|d| {
            let sizes = device.enum_framesizes(d.fourcc).unwrap_or_default();
            let sizes = sizes
                .into_iter()
                .map(|s| match s.size {
                    FrameSizeEnum::Discrete(size) => {
                        let rates = device.enum_frameintervals(d.fourcc, size.width, size.height).map(|i| rates(&i)).unwrap_or(Rates::Unknown);
                        SizeModes { size: Size::Discrete(size.width, size.height), rates }
                    }
                    FrameSizeEnum::Stepwise(s) => {
                        let rates = device.enum_frameintervals(d.fourcc, s.max_width, s.max_height).map(|i| rates(&i)).unwrap_or(Rates::Unknown);
                        let size = Size::Range { min: (s.min_width, s.min_height), max: (s.max_width, s.max_height), step: (s.step_width, s.step_height) };
                        SizeModes { size, rates }
                    }
                })
                .collect();
            FormatModes { fourcc: d.fourcc.str().unwrap_or("????").to_string(), description: d.description, sizes }
        })
        .collect()
}

fn fps(numerator: u32, denominator: u32) -> f64 {
    if numerator == 0 {
        0.0
    } else {
        f64::from(denominator) / f64::from(numerator)
    }
}

fn rates(intervals: &[::v4l::frameinterval::FrameInterval]) -> Rates {
    let mut discrete = Vec::new();
    for interval in intervals {
        match &interval.interval {
            FrameIntervalEnum::Discrete(f) => discrete.push(fps(f.numerator, f.denominator)),
            // An interval range: the shortest interval is the highest rate.
            FrameIntervalEnum::Stepwise(s) => return Rates::Range { min: fps(s.max.numerator, s.max.denominator), max: fps(s.min.numerator, s.min.denominator) },
        }
    }
    if discrete.is_empty() {
        return Rates::Unknown;
    }
    discrete.sort_by(|a, b| b.total_cmp(a));
    discrete.dedup();
    Rates::Discrete(discrete)
}

/// `30` or `7.5`: whole rates without a fraction, others with one decimal.
fn rate(fps: f64) -> String {
    if (fps - fps.round()).abs() < 0.005 {
        format!("{}", fps.round())
    } else {
        format!("{fps:.1}")
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Discrete(w, h) => write!(f, "{w}x{h}"),
            Size::Range { min, max, step } => write!(f, "{}x{} to {}x{} (step {}x{})", min.0, min.1, max.0, max.1, step.0, step.1),
        }
    }
}

impl fmt::Display for Rates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rates::Discrete(list) => write!(f, "{} fps", list.iter().map(|r| rate(*r)).collect::<Vec<_>>().join(", ")),
            Rates::Range { min, max } => write!(f, "{} to {} fps", rate(*min), rate(*max)),
            Rates::Unknown => f.write_str("frame rate not reported"),
        }
    }
}

impl fmt::Display for DeviceInfo {
    /// The device line, then one line per format and size: what `--source v4l:PATH` and a
    /// camera's `width`, `height`, `fps` can ask for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  {} ({}, {})", self.path.display(), self.card, self.driver, self.bus)?;
        if !self.capture {
            return f.write_str("\n    no pictures from this node (metadata, codec or ISP); not usable as v4l: source");
        }
        if self.formats.is_empty() {
            return f.write_str("\n    lists no formats");
        }
        for format in &self.formats {
            write!(f, "\n    {} {}", format.fourcc, format.description)?;
            for size in &format.sizes {
                write!(f, "\n        {:>11}  {}", size.size.to_string(), size.rates)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_print_as_a_user_reads_them() {
        let device = DeviceInfo {
            path: "/dev/video0".into(),
            card: "HD Webcam C615".into(),
            driver: "uvcvideo".into(),
            bus: "usb-0000:01:00.0-1.2".into(),
            capture: true,
            formats: vec![FormatModes {
                fourcc: "MJPG".into(),
                description: "Motion-JPEG".into(),
                sizes: vec![
                    SizeModes { size: Size::Discrete(1280, 720), rates: Rates::Discrete(vec![30.0, 7.5]) },
                    SizeModes { size: Size::Range { min: (16, 16), max: (1920, 1080), step: (8, 8) }, rates: Rates::Range { min: 1.0, max: 60.0 } },
                ],
            }],
        };
        let text = device.to_string();
        assert_eq!(
            text,
            "/dev/video0  HD Webcam C615 (uvcvideo, usb-0000:01:00.0-1.2)\n    MJPG Motion-JPEG\n           1280x720  30, 7.5 fps\n        16x16 to 1920x1080 (step 8x8)  1 to 60 fps"
        );
        let metadata = DeviceInfo { capture: false, formats: vec![], ..device };
        assert!(metadata.to_string().ends_with("not usable as v4l: source"), "{metadata}");
    }

    #[test]
    fn intervals_become_rates_highest_first() {
        use ::v4l::fraction::Fraction;
        use ::v4l::frameinterval::FrameInterval;
        let at = |n, d| FrameInterval { index: 0, fourcc: ::v4l::FourCC::new(b"MJPG"), width: 640, height: 480, typ: 0, interval: FrameIntervalEnum::Discrete(Fraction::new(n, d)) };
        assert_eq!(rates(&[at(1, 15), at(2, 15), at(1, 30)]), Rates::Discrete(vec![30.0, 15.0, 7.5]));
        assert_eq!(rates(&[]), Rates::Unknown);
    }
}
