//! What an agent asks of a SIP call's dialog rather than its media: a blind transfer (REFER)
//! and DTMF as SIP INFO. Checked here, sent by the SIP task (`server/dialog_requests.rs`),
//! answered later as `transfer.*` events (or `error` with `dtmf_failed` / `refused`).

use std::time::Duration;

use super::protocol::CallEvent;

/// INFO DTMF's default tone length (`Duration=160`, the common `application/dtmf-relay` value).
pub const INFO_DTMF_DURATION_MS: u64 = 160;
/// Characters one `send_dtmf` may queue (as for RFC 4733).
const MAX_DIGITS: usize = 64;

/// A request for the call's SIP dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InDialog {
    /// REFER to this `sip:`/`sips:`/`tel:` URI.
    Transfer { to: String },
    /// One INFO per digit (`0-9 * # A-D`; `w` waits 0.5 s).
    Dtmf { digits: String, duration: Duration },
}

impl InDialog {
    /// A transfer target must be a `sip:`, `sips:` or `tel:` URI on one line, without angle
    /// brackets (the SIP core checks its grammar).
    pub fn transfer(to: String) -> Result<Self, CallEvent> {
        let scheme = to.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        let plain = !to.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c));
        if !plain || !matches!(scheme.as_deref(), Some("sip" | "sips" | "tel")) {
            return Err(CallEvent::error("invalid_message", format!("transfer target `{}`: use a sip:, sips: or tel: URI", to.escape_debug())));
        }
        Ok(InDialog::Transfer { to })
    }

    /// INFO digits: `0-9 * # A-D`, `w`; at most 64; tones 40-2000 ms.
    pub fn info_dtmf(digits: String, duration: Duration) -> Result<Self, CallEvent> {
        let invalid = |message: String| CallEvent::error("invalid_message", message);
        if let Some(bad) = digits.chars().find(|c| !(c.is_ascii_digit() || "*#ABCDabcdw".contains(*c))) {
            return Err(invalid(format!("invalid DTMF digit {bad:?} for INFO (expected 0-9, *, #, A-D or w)")));
        }
        if digits.chars().count() > MAX_DIGITS {
            return Err(invalid(format!("at most {MAX_DIGITS} DTMF digits per message")));
        }
        if !(40..=2000).contains(&duration.as_millis()) {
            return Err(invalid("duration_ms must be 40-2000".into()));
        }
        Ok(InDialog::Dtmf { digits, duration })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_sip_or_tel_uris_on_one_line() {
        assert!(InDialog::transfer("sip:bob@192.0.2.1:5080".into()).is_ok());
        assert!(InDialog::transfer("tel:+15551234567".into()).is_ok());
        for bad in ["bob", "http://x", "sip:bob@x>\r\nVia: y", "<sip:bob@x>", ""] {
            assert!(InDialog::transfer(bad.into()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn info_digits_and_tone_lengths_are_checked() {
        let ms = Duration::from_millis;
        assert!(InDialog::info_dtmf("0123456789*#ABCDw".into(), ms(160)).is_ok());
        assert!(InDialog::info_dtmf("1,".into(), ms(160)).is_err());
        assert!(InDialog::info_dtmf("1".repeat(65), ms(160)).is_err());
        assert!(InDialog::info_dtmf("1".into(), ms(10)).is_err());
    }
}
