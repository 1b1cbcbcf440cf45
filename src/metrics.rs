//! Prometheus metrics: the process-wide families, updated where things
//! happen (the pacer, the synthesis workers, the SIP task, call ends) and
//! rendered in the text exposition format by `GET /metrics`. Gauges that
//! are a view of live state (calls, the synthesis queue) are set at scrape.
//! Names and meanings: docs/configuration.md, "Metrics".

use std::sync::LazyLock;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, IntGauge, Opts, Registry, TextEncoder};

/// Seconds, for first audio and waits: 10 ms to 5 s.
const LATENCY_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0];
/// Real-time factors: compute time over audio time.
const RTF_BUCKETS: &[f64] = &[0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0];

pub struct Metrics {
    registry: Registry,
    pub calls_active: IntGaugeVec,
    pub calls_total: IntCounterVec,
    pub first_audio: Histogram,
    pub jitter_wait: Histogram,
    pub underruns: IntCounter,
    pub late_sends: IntCounter,
    pub rtp_packets_sent: IntCounter,
    pub synthesis_rtf: Histogram,
    pub synthesis_batch: Histogram,
    pub synthesis_queue: IntGauge,
    pub sip_responses: IntCounterVec,
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("a valid histogram")
}

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            registry: Registry::new(),
            calls_active: IntGaugeVec::new(Opts::new("voxline_calls_active", "Calls up now"), &["transport"]).expect("gauge"),
            calls_total: IntCounterVec::new(
                Opts::new("voxline_calls_total", "Calls ended or refused, by how"),
                &["transport", "direction", "outcome"],
            )
            .expect("counter"),
            first_audio: histogram(
                "voxline_first_audio_seconds",
                "Text received -> first RTP packet of its speech, for each utterance the caller waited for in silence",
                LATENCY_BUCKETS,
            ),
            jitter_wait: histogram("voxline_jitter_wait_seconds", "Prefill an utterance held back after its first audio arrived", LATENCY_BUCKETS),
            underruns: IntCounter::new("voxline_underruns_total", "20 ms frames of speech whose audio had not arrived in time").expect("counter"),
            late_sends: IntCounter::new("voxline_late_sends_total", "RTP packets sent over 10 ms after their tick").expect("counter"),
            rtp_packets_sent: IntCounter::new("voxline_rtp_packets_sent_total", "RTP packets sent").expect("counter"),
            synthesis_rtf: histogram("voxline_synthesis_rtf", "Synthesis compute time over the audio it made, per chunk", RTF_BUCKETS),
            synthesis_batch: histogram(
                "voxline_synthesis_batch_size",
                "Streams advanced by one chunk in one engine call (engines that batch: Chatterbox; Piper on a GPU)",
                BATCH_BUCKETS,
            ),
            synthesis_queue: IntGauge::new("voxline_synthesis_queue", "Speech streams waiting for a synthesis worker").expect("gauge"),
            sip_responses: IntCounterVec::new(Opts::new("voxline_sip_responses_total", "SIP responses sent, by status code"), &["code"])
                .expect("counter"),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 11] = [
            Box::new(m.calls_active.clone()),
            Box::new(m.calls_total.clone()),
            Box::new(m.first_audio.clone()),
            Box::new(m.jitter_wait.clone()),
            Box::new(m.underruns.clone()),
            Box::new(m.late_sends.clone()),
            Box::new(m.rtp_packets_sent.clone()),
            Box::new(m.synthesis_rtf.clone()),
            Box::new(m.synthesis_batch.clone()),
            Box::new(m.synthesis_queue.clone()),
            Box::new(m.sip_responses.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("each family registered once");
        }
        m
    }

    /// Every family in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Counts a SIP datagram we send if it is a response.
    pub fn sip_sent(&self, datagram: &[u8]) {
        if let Some(code) = datagram.strip_prefix(b"SIP/2.0 ").and_then(|rest| rest.get(..3)).and_then(|c| std::str::from_utf8(c).ok()) {
            if code.bytes().all(|b| b.is_ascii_digit()) {
                self.sip_responses.with_label_values(&[code]).inc();
            }
        }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_their_names_and_sip_codes_are_counted() {
        let m = Metrics::new();
        m.sip_sent(b"SIP/2.0 200 OK\r\n");
        m.sip_sent(b"SIP/2.0 503 Service Unavailable\r\n");
        m.sip_sent(b"BYE sip:a@b SIP/2.0\r\n");
        m.first_audio.observe(0.08);
        let text = m.render();
        assert!(text.contains("voxline_sip_responses_total{code=\"200\"} 1"), "{text}");
        assert!(text.contains("voxline_sip_responses_total{code=\"503\"} 1"));
        assert!(!text.contains("code=\"sip\""));
        assert!(text.contains("voxline_first_audio_seconds_count 1"));
        assert!(text.contains("# TYPE voxline_first_audio_seconds histogram"));
    }
}
