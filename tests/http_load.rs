//! A burst of 100 parallel clients against `cvedge serve` with 2 workers, a queue of 4 and 8
//! connection threads: every client gets 200 or 503 (never a reset or a hang), some are turned
//! away (the queue is bounded), the server keeps answering, and its peak memory after a second
//! burst is where the first one left it. Each client posts a 3.6 MB image, so a server that
//! buffered every request would need 360 MB more.

mod common;

use std::sync::{Arc, Barrier};

use common::serve::*;

/// A PNG of noise (it does not compress): about 3.6 MB, under the 4 MB limit.
fn noise_png() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let image = image::RgbImage::from_fn(1100, 1100, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let mut png = std::io::Cursor::new(vec![]);
    image.write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

/// What each client got: status, `Retry-After`, error code.
fn burst(addr: std::net::SocketAddr, image: &Arc<Vec<u8>>, clients: usize) -> Vec<(u16, Option<String>, String)> {
    let start = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (image, start) = (image.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let answer = post(addr, "/image", "image/png", &image);
                let code = if answer.status == 200 { String::new() } else { answer.json()["code"].as_str().unwrap_or("").to_string() };
                (answer.status, answer.header("retry-after").map(str::to_string), code)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("a client got no answer")).collect()
}

#[test]
fn a_burst_of_100_parallel_requests_gets_200_or_503_and_memory_stays_bounded() {
    let image = Arc::new(noise_png());
    assert!(image.len() > 3_000_000 && image.len() < 4 << 20, "{} bytes", image.len());
    let server = serve(&["--workers", "2", "--queue", "4", "--max-connections", "8"]);
    assert_eq!(post(server.addr, "/image", "image/png", &image).status, 200, "warm-up");
    let before = peak_rss_kb(server.pid());
    let mut peaks = vec![];
    for round in 0..2 {
        let answers = burst(server.addr, &image, 100);
        let ok = answers.iter().filter(|a| a.0 == 200).count();
        let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
        eprintln!("burst {round}: {ok} answered 200, {} answered 503", busy.len());
        assert_eq!(ok + busy.len(), 100, "only 200 or 503: {answers:?}");
        assert!(ok >= 2, "some requests are served: {answers:?}");
        assert!(!busy.is_empty(), "a bounded queue turns some of 100 simultaneous requests away");
        for (_, retry_after, code) in busy {
            assert_eq!((retry_after.as_deref(), code.as_str()), (Some("1"), "ServiceUnavailable"));
        }
        peaks.push(peak_rss_kb(server.pid()));
    }
    eprintln!("peak RSS: {before} kB after warm-up, {} kB after burst 1, {} kB after burst 2", peaks[0], peaks[1]);
    assert!(peaks[0] < before + 150 * 1024, "the first burst raised the peak by {} MB", (peaks[0] - before) / 1024);
    assert!(peaks[1] < peaks[0] + 40 * 1024, "the second burst raised the peak again, by {} MB", (peaks[1] - peaks[0]) / 1024);
    assert_eq!(post(server.addr, "/image", "image/png", &image).status, 200, "still serving");
}
