//! An utterance's audio waiting to be sent, as a queue of segments: a cached
//! prompt is one segment shared by reference with every call playing it
//! (`Arc<[u8]>`, never copied per call), synthesized audio one owned segment
//! per pushed chunk. A segment is freed as soon as its last byte is sent, so a
//! call gives its memory back while it plays, and holds none once silent.

use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug)]
enum Bytes {
    Shared(Arc<[u8]>),
    Owned(Box<[u8]>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Shared(b) => b,
            Bytes::Owned(b) => b,
        }
    }
}

/// The part `start..end` of some bytes.
#[derive(Debug)]
struct Segment {
    bytes: Bytes,
    start: usize,
    end: usize,
}

impl Segment {
    fn len(&self) -> usize {
        self.end - self.start
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes.as_slice()[self.start..self.end]
    }
}

/// Mu-law bytes in order, taken from the front.
#[derive(Debug, Default)]
pub struct AudioQueue {
    segments: VecDeque<Segment>,
    len: usize,
}

impl AudioQueue {
    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `pcmu` (synthesized audio).
    pub fn push(&mut self, pcmu: &[u8]) {
        if !pcmu.is_empty() {
            self.add(Bytes::Owned(pcmu.into()), pcmu.len());
        }
    }

    /// Appends `pcmu` by reference (a cached prompt every call shares).
    pub fn push_shared(&mut self, pcmu: Arc<[u8]>) {
        let n = pcmu.len();
        if n > 0 {
            self.add(Bytes::Shared(pcmu), n);
        }
    }

    fn add(&mut self, bytes: Bytes, n: usize) {
        self.segments.push_back(Segment { bytes, start: 0, end: n });
        self.len += n;
    }

    /// Moves up to `dst.len()` bytes from the front into `dst`; returns how many.
    pub fn pop_into(&mut self, dst: &mut [u8]) -> usize {
        let mut done = 0;
        while done < dst.len() {
            let Some(front) = self.segments.front_mut() else { break };
            let n = front.len().min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&front.as_slice()[..n]);
            front.start += n;
            done += n;
            if front.len() == 0 {
                self.segments.pop_front();
            }
        }
        self.len -= done;
        self.shrink();
        done
    }

    /// Drops up to `n` bytes from the front.
    pub fn skip(&mut self, n: usize) {
        let mut left = n.min(self.len);
        self.len -= left;
        while left > 0 {
            let Some(front) = self.segments.front_mut() else { break };
            let k = front.len().min(left);
            front.start += k;
            left -= k;
            if front.len() == 0 {
                self.segments.pop_front();
            }
        }
        self.shrink();
    }

    /// Keeps the first `n` bytes, drops the rest.
    pub fn truncate(&mut self, n: usize) {
        while self.len > n {
            let Some(back) = self.segments.back_mut() else { break };
            let k = back.len().min(self.len - n);
            back.end -= k;
            self.len -= k;
            if back.len() == 0 {
                self.segments.pop_back();
            }
        }
        self.shrink();
    }

    /// A queue that has run dry gives back its segment list's memory.
    fn shrink(&mut self) {
        if self.segments.is_empty() && self.segments.capacity() > 0 {
            self.segments = VecDeque::new();
        }
    }

    /// Heap bytes this queue holds of its own (shared segments not counted).
    pub fn owned_bytes(&self) -> usize {
        self.segments.capacity() * std::mem::size_of::<Segment>()
            + self.segments.iter().map(|s| if let Bytes::Owned(b) = &s.bytes { b.len() } else { 0 }).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut AudioQueue, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = q.pop_into(&mut buf);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn shared_and_owned_segments_come_out_in_order_across_frame_boundaries() {
        let prompt: Arc<[u8]> = (0..=200u8).collect::<Vec<_>>().into();
        let mut q = AudioQueue::default();
        q.push(&[1, 2, 3]);
        q.push_shared(prompt.clone());
        q.push(&[]);
        q.push(&[7; 50]);
        assert_eq!(q.len(), 3 + 201 + 50);
        let mut want = vec![1, 2, 3];
        want.extend(0..=200u8);
        want.extend([7; 50]);
        assert_eq!(drain(&mut q, 160), want);
        assert!(q.is_empty());
        assert_eq!(q.owned_bytes(), 0, "a queue run dry holds nothing");
        assert_eq!(Arc::strong_count(&prompt), 1, "the prompt is no longer referenced once played");
    }

    #[test]
    fn a_shared_prompt_is_not_copied_per_queue() {
        let prompt: Arc<[u8]> = vec![0x55; 36_000].into();
        let queues: Vec<AudioQueue> = (0..100)
            .map(|_| {
                let mut q = AudioQueue::default();
                q.push_shared(prompt.clone());
                q
            })
            .collect();
        assert_eq!(Arc::strong_count(&prompt), 101);
        assert!(queues.iter().all(|q| q.len() == 36_000 && q.owned_bytes() < 1_000), "each queue holds a reference, not the audio");
    }

    #[test]
    fn skip_and_truncate_cut_through_segments() {
        let mut q = AudioQueue::default();
        q.push(&[1; 10]);
        q.push_shared(vec![2; 10].into());
        q.push(&[3; 10]);
        q.skip(15);
        assert_eq!(q.len(), 15);
        q.truncate(8);
        assert_eq!(drain(&mut q, 3), [2, 2, 2, 2, 2, 3, 3, 3]);
        q.push(&[4; 5]);
        q.skip(100);
        assert!(q.is_empty());
        q.truncate(0);
        assert_eq!(q.len(), 0);
    }
}
