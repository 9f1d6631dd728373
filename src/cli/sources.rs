//! `cvedge sources`: the cameras this machine has (V4L2 devices with their formats, sizes and
//! frame rates), so a Pi user can check the camera before writing the configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use cvedge::source::v4l_query::{describe, video_devices};

const OTHER_KINDS: &str = "cvedge also reads mjpeg:http://HOST/PATH (IP cameras, ESP32-CAM), ffmpeg:rtsp://... or a video file, file:FOLDER and synthetic; see the README's source table";

/// With no `devices`, every `/dev/video*`. A named device that cannot be read is an error; in the
/// full listing an unreadable node is reported in its place and the others are still listed.
pub fn sources(devices: &[PathBuf]) -> anyhow::Result<ExitCode> {
    if !devices.is_empty() {
        for path in devices {
            println!("{}", describe(path)?);
        }
        println!("\n{OTHER_KINDS}");
        return Ok(ExitCode::SUCCESS);
    }
    let found = video_devices();
    if found.is_empty() {
        // No camera is a normal answer (exit 0); what to check comes with it.
        println!("no V4L2 cameras: there is no /dev/video* device.");
        println!("Plug in a USB camera and check `ls -l /dev/video*` (the devices belong to the video group:");
        println!("`id` should list video for the user running cvedge; the .deb's cvedge user is in it).");
        println!("\n{OTHER_KINDS}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut usable = None;
    for path in &found {
        match describe(path) {
            Ok(info) => {
                if info.capture && !info.formats.is_empty() && usable.is_none() {
                    usable = Some(info.path.clone());
                }
                println!("{info}");
            }
            Err(problem) => println!("{problem}"),
        }
    }
    match usable {
        Some(path) => println!("\nuse a camera with --source v4l:{0} (or source = \"v4l:{0}\" under [[camera]]); {OTHER_KINDS}", path.display()),
        None => println!("\nnone of these nodes delivers pictures; {OTHER_KINDS}"),
    }
    Ok(ExitCode::SUCCESS)
}
