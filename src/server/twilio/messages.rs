//! Twilio Media Streams' WebSocket messages, as Twilio documents them
//! ("Media Streams - WebSocket Messages"): what Twilio sends the app's
//! server (voxline here), and what the server sends back on a
//! bidirectional (`<Connect><Stream>`) stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A message from Twilio.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum FromTwilio {
    /// The first message: the protocol to expect.
    Connected {
        #[serde(default)]
        protocol: Option<String>,
        #[serde(default)]
        version: Option<String>,
    },
    /// The stream's metadata, once, before any media.
    Start {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        start: Start,
    },
    /// 20 ms of the caller's audio.
    Media { media: Media },
    /// A key the caller pressed.
    Dtmf { dtmf: Dtmf },
    /// Audio sent before our mark of this name has been played.
    Mark { mark: MarkName },
    /// The stream is over (the call hung up or left `<Connect>`).
    Stop {
        #[serde(default)]
        stop: Option<Stop>,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    #[serde(default)]
    pub account_sid: String,
    pub call_sid: String,
    /// `<Parameter name=... value=...>` of the `<Stream>`.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
    #[serde(default)]
    pub tracks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
}

impl MediaFormat {
    /// Twilio's only format: 8 kHz mono mu-law, the same as voxline's RTP.
    pub fn is_mulaw_8k(&self) -> bool {
        self.encoding == "audio/x-mulaw" && self.sample_rate == 8000 && self.channels == 1
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Media {
    #[serde(default)]
    pub track: Option<String>,
    /// The chunk's number, from 1 (a string on the wire).
    #[serde(default)]
    pub chunk: Option<String>,
    /// Milliseconds from the stream's start (a string on the wire).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Base64 mu-law.
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dtmf {
    #[serde(default)]
    pub track: Option<String>,
    pub digit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stop {
    #[serde(default)]
    pub account_sid: String,
    #[serde(default)]
    pub call_sid: String,
}

/// A message to Twilio.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum ToTwilio<'a> {
    /// Audio for the caller: base64 mu-law, here always one 20 ms frame.
    Media {
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        media: OutMedia,
    },
    /// Twilio echoes it back once the audio sent before it has played.
    Mark {
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        mark: MarkName,
    },
    /// Drops the audio Twilio still holds (barge-in).
    Clear {
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutMedia {
    pub payload: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The examples on Twilio's "Media Streams - WebSocket Messages" page.
    #[test]
    fn twilios_documented_messages_parse() {
        let connected: FromTwilio = serde_json::from_value(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})).unwrap();
        assert_eq!(connected, FromTwilio::Connected { protocol: Some("Call".into()), version: Some("1.0.0".into()) });
        let start = json!({
            "event": "start", "sequenceNumber": "1",
            "start": {
                "accountSid": "AC123", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0", "callSid": "CA123",
                "tracks": ["inbound", "outbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"FirstName": "Jane", "LastName": "Doe"}
            },
            "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"
        });
        let FromTwilio::Start { stream_sid, start } = serde_json::from_value(start).unwrap() else { panic!("not a start") };
        assert_eq!(stream_sid, "MZ18ad3ab5a668481ce02b83e7395059f0");
        assert_eq!((start.call_sid.as_str(), start.custom_parameters["FirstName"].as_str()), ("CA123", "Jane"));
        assert!(start.media_format.is_mulaw_8k());
        let media = json!({"event": "media", "sequenceNumber": "3",
            "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "no+JhoaJjpy="}, "streamSid": "MZ1"});
        assert!(matches!(serde_json::from_value(media).unwrap(), FromTwilio::Media { media } if media.payload == "no+JhoaJjpy="));
        let dtmf = json!({"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "1"}});
        assert!(matches!(serde_json::from_value(dtmf).unwrap(), FromTwilio::Dtmf { dtmf } if dtmf.digit == "1"));
        let mark = json!({"event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": {"name": "my label"}});
        assert!(matches!(serde_json::from_value(mark).unwrap(), FromTwilio::Mark { mark } if mark.name == "my label"));
        let stop = json!({"event": "stop", "sequenceNumber": "5", "streamSid": "MZ1", "stop": {"accountSid": "AC1", "callSid": "CA1"}});
        assert!(matches!(serde_json::from_value(stop).unwrap(), FromTwilio::Stop { .. }));
    }

    #[test]
    fn our_messages_are_twilios_shape() {
        let media = ToTwilio::Media { stream_sid: "MZ1", media: OutMedia { payload: "AAA=".into() } };
        assert_eq!(serde_json::to_value(&media).unwrap(), json!({"event": "media", "streamSid": "MZ1", "media": {"payload": "AAA="}}));
        let mark = ToTwilio::Mark { stream_sid: "MZ1", mark: MarkName { name: "m".into() } };
        assert_eq!(serde_json::to_value(&mark).unwrap(), json!({"event": "mark", "streamSid": "MZ1", "mark": {"name": "m"}}));
        assert_eq!(serde_json::to_value(ToTwilio::Clear { stream_sid: "MZ1" }).unwrap(), json!({"event": "clear", "streamSid": "MZ1"}));
    }
}
