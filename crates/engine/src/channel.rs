//! A blocking `Read` fed by an async byte stream, so blocking code (hashing,
//! compressing, untarring) can consume a download or upload as it arrives,
//! without holding it in memory.

use bytes::Bytes;
use tokio::sync::mpsc;

pub type Chunk = std::io::Result<Bytes>;

pub struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
}

/// A bounded channel: the sender waits when the reader falls behind.
pub fn channel_reader() -> (mpsc::Sender<Chunk>, ChannelReader) {
    let (tx, rx) = mpsc::channel(32);
    (tx, ChannelReader { rx, current: Bytes::new() })
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
