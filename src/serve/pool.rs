//! The inference workers: a bounded queue of posted images in front of N threads that share the
//! current model. Decoding happens here too, so the memory decoded images take is bounded by the
//! number of workers, not by the number of clients; a full queue is the caller's cue to answer 503.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::classifier::{Classification, Classifier};
use crate::daemon::worker::CurrentModel;
use crate::error::{Error, Result};
use crate::source::decode;

/// A classified image, with the model that classified it (labels, iteration).
pub struct Done {
    pub model: Arc<Classifier>,
    pub classification: Classification,
}

struct Job {
    image: Vec<u8>,
    reply: Sender<Result<Done>>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Every worker is busy and the queue is full.
    Busy,
    /// The server is stopping.
    Stopping,
}

pub struct Pool {
    jobs: Mutex<Option<Sender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    capacity: usize,
}

impl Pool {
    /// Starts `workers` threads behind a queue of `queue` images.
    pub fn start(model: CurrentModel, workers: usize, queue: usize) -> Result<Pool> {
        let (tx, rx) = bounded::<Job>(queue);
        let mut handles = vec![];
        for i in 0..workers.max(1) {
            let (rx, model) = (rx.clone(), model.clone());
            handles.push(crate::spawn(format!("serve-infer-{i}"), move || work(rx, model))?);
        }
        Ok(Pool { jobs: Mutex::new(Some(tx)), workers: Mutex::new(handles), capacity: queue })
    }

    /// Queues an encoded image; the answer arrives on the returned channel.
    pub fn submit(&self, image: Vec<u8>) -> std::result::Result<Receiver<Result<Done>>, Refused> {
        let (reply, answer) = bounded(1);
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(jobs) = jobs.as_ref() else { return Err(Refused::Stopping) };
        match jobs.try_send(Job { image, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopping),
        }
    }

    /// Images waiting for a worker.
    pub fn queued(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(0, Sender::len)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Refuses new images, lets the workers finish the queued ones and joins them.
    pub fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        for handle in std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner())) {
            let _ = handle.join();
        }
    }
}

fn work(jobs: Receiver<Job>, model: CurrentModel) {
    for job in jobs.iter() {
        let model = model.get();
        // A panic in a decoder or engine on one odd upload must not take a worker away for good.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // Within decode's pixel bound, checked before decoding (a 4 MB upload rarely holds more
            // than a 24-megapixel photo).
            let image = decode(&job.image, "the posted image")?;
            model.classify(&image)
        }))
        .unwrap_or_else(|_| Err(Error::Inference("the engine panicked on this image".into())));
        let _ = job.reply.send(outcome.map(|classification| Done { model, classification }));
    }
}
