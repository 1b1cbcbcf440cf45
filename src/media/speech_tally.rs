//! What a call's speech came to, for its call record: utterances heard, how
//! long the caller waited for each in silence, and barge-ins.

use std::time::Duration;

/// First-audio waits kept per call; a call that speaks more keeps its
/// first ones (a record's p50 and max then describe those).
const MAX_SAMPLES: usize = 4096;

/// Counts kept by the call's [`super::Playout`] as it plays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeechTally {
    /// Utterances that began to play.
    pub utterances: u64,
    /// Clears (barge-ins) that cut speech the caller was hearing.
    pub barge_ins: u64,
    /// Text received -> first audio sent, for each utterance the caller
    /// waited for in silence (as `voxline_first_audio_seconds`).
    first_audio: Vec<Duration>,
}

impl SpeechTally {
    /// An utterance began to play; `first_audio` as in [`super::PlayoutEvent::Started`].
    pub fn started(&mut self, first_audio: Option<Duration>) {
        self.utterances += 1;
        if let Some(wait) = first_audio.filter(|_| self.first_audio.len() < MAX_SAMPLES) {
            self.first_audio.push(wait);
        }
    }

    pub fn barge_in(&mut self) {
        self.barge_ins += 1;
    }

    /// The median first-audio wait (nearest rank); `None` before any.
    pub fn first_audio_p50(&self) -> Option<Duration> {
        let mut waits = self.first_audio.clone();
        waits.sort_unstable();
        waits.get(waits.len().div_ceil(2).checked_sub(1)?).copied()
    }

    pub fn first_audio_max(&self) -> Option<Duration> {
        self.first_audio.iter().max().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn median_and_max_of_the_waits_in_silence() {
        let mut tally = SpeechTally::default();
        assert_eq!((tally.first_audio_p50(), tally.first_audio_max()), (None, None));
        tally.started(Some(ms(300)));
        tally.started(None); // followed speech: no wait
        tally.started(Some(ms(100)));
        tally.started(Some(ms(200)));
        assert_eq!(tally.utterances, 4);
        assert_eq!(tally.first_audio_p50(), Some(ms(200)));
        assert_eq!(tally.first_audio_max(), Some(ms(300)));
        tally.started(Some(ms(50)));
        assert_eq!(tally.first_audio_p50(), Some(ms(100)), "nearest rank of four: the second");
    }
}
